//! The PostgreSQL store's own guarantees (under `PDS_TEST_POSTGRES`; the rest of the suite runs
//! on it as well): several `serve` processes on one database are one service, search never
//! scans the patients, schema migrations, and a database server that dies under load.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

/// The PostgreSQL URL of the suite, or None (and a note) when the suite runs on redb.
fn on_postgres(test: &str) -> Option<&'static str> {
    let url = postgres();
    if url.is_none() {
        eprintln!("{test}: needs PDS_TEST_POSTGRES");
    }
    url
}

/// Two nodes of one service: two `serve` processes on the database that stands for `db`.
fn two_nodes(db: &Path) -> (Server, Server) {
    let a = Server::start(db, &["--demo"]);
    let b = Server::start(db, &[]);
    (a, b)
}

fn gender(value: &str) -> Value {
    json!({"patches": [{"op": "replace", "path": "/gender", "value": value}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_let_exactly_one_change_win_each_version() {
    let Some(_) = on_postgres("two nodes, one winner") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes(&dir.path().join("pds.redb"));
    let nodes = Arc::new([a.api(), b.api()]);
    let values = ["male", "female", "unknown"];
    for round in 0..8 {
        let v = nodes[0].get_patient(FULL).await.version();
        let mut tasks = Vec::new();
        for i in 0..8usize {
            let nodes = nodes.clone();
            let value = values[(round + i) % values.len()];
            tasks.push(tokio::spawn(async move {
                let r = nodes[i % 2].patch(FULL, v, gender(value)).await;
                (
                    r.status,
                    r.body["gender"].clone(),
                    r.header("etag").map(str::to_string),
                )
            }));
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        let won: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 200).collect();
        assert_eq!(won.len(), 1, "round {round}: {answers:?}");
        assert!(
            answers.iter().all(|(s, _, _)| *s == 200 || *s == 409),
            "the others are told the version moved on: {answers:?}"
        );
        let expected_etag = format!("W/\"{}\"", v + 1);
        assert_eq!(won[0].2.as_deref(), Some(expected_etag.as_str()));
        // both nodes now serve the winner's version
        for node in nodes.iter() {
            let now = node.get_patient(FULL).await;
            assert_eq!(now.version(), v + 1);
            assert_eq!(now.body["gender"], won[0].1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_never_allocate_one_number_twice() {
    let Some(_) = on_postgres("two nodes, allocation") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    // a range of 200 prefixes (about 180 valid numbers) for 120 creates: draws collide often,
    // so the path where another node took the number a moment ago is taken many times
    let range = ["--allocation-range", "9993000000-9993001999"];
    let a = Server::start(&db, &[&["--demo"][..], &range[..]].concat());
    let b = Server::start(&db, &range);
    let nodes = Arc::new([a.api(), b.api()]);
    let mut tasks = Vec::new();
    for i in 0..120usize {
        let nodes = nodes.clone();
        tasks.push(tokio::spawn(async move {
            let body = new_patient(
                ["Ada", "Bea", "Cai", "Dov", "Eli", "Fen"][i % 6],
                &format!("Twonode{}{}", (b'a' + (i / 6) as u8 % 26) as char, i),
                &format!("19{:02}-0{}-{:02}", 30 + i % 60, 1 + i % 9, 1 + i % 28),
            );
            let rid = request_id();
            // a 503 (every draw taken by the other node, five times over) is retried as
            // clients do: with the same request id
            for _ in 0..20 {
                let r = nodes[i % 2].post_with("/Patient", &body, &rid).await;
                match r.status {
                    201 => return r.body["id"].as_str().unwrap().to_string(),
                    503 => tokio::time::sleep(Duration::from_millis(20)).await,
                    other => panic!("create {i}: {other} {}", r.body),
                }
            }
            panic!("create {i} never succeeded");
        }));
    }
    let mut numbers = BTreeSet::new();
    for t in tasks {
        let n = t.await.unwrap();
        assert!(n.starts_with("999300"), "{n} is in the range");
        assert!(numbers.insert(n.clone()), "{n} allocated twice");
    }
    assert_eq!(numbers.len(), 120);
    // every one of them is a record both nodes serve
    for (k, n) in numbers.iter().enumerate() {
        assert_eq!(nodes[k % 2].get_patient(n).await.status, 200, "{n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_sent_to_the_other_node_gets_the_original_answer() {
    let Some(_) = on_postgres("two nodes, idempotent retry") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes(&dir.path().join("pds.redb"));
    let (a, b) = (a.api(), b.api());
    let v = a.get_patient(FULL).await.version();
    let patch = |api: &Api, rid: &str, version: u32, value: &str| {
        let if_match = format!("W/\"{version}\"");
        let (api, rid, body) = (
            Api {
                http: api.http.clone(),
                base: api.base.clone(),
                token: api.token.clone(),
            },
            rid.to_string(),
            gender(value).to_string(),
        );
        async move {
            api.send(
                "PATCH",
                &format!("/Patient/{FULL}"),
                &[
                    ("X-Request-ID", &rid),
                    ("If-Match", &if_match),
                    ("Content-Type", "application/json-patch+json"),
                ],
                Some(body),
            )
            .await
        }
    };
    // one after the other: the second node answers what the first did
    let rid = request_id();
    let first = patch(&a, &rid, v, "male").await;
    let again = patch(&b, &rid, v, "male").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!((again.status, &again.body), (200, &first.body));
    assert_eq!(again.header("etag"), first.header("etag"));
    assert_eq!(b.get_patient(FULL).await.version(), v + 1, "applied once");

    // at the same moment, through both: one change, the same answer twice
    let rid = request_id();
    let (x, y) = tokio::join!(
        patch(&a, &rid, v + 1, "female"),
        patch(&b, &rid, v + 1, "female")
    );
    assert_eq!((x.status, y.status), (200, 200), "{} / {}", x.body, y.body);
    assert_eq!(x.body, y.body);
    assert_eq!(a.get_patient(FULL).await.version(), v + 2, "applied once");

    // the same request id with another change is refused on either node
    let reused = patch(&b, &rid, v + 2, "unknown").await;
    assert_eq!(reused.status, 422, "{}", reused.body);
    assert_eq!(a.get_patient(FULL).await.version(), v + 2);
}

#[tokio::test]
async fn tokens_and_changes_made_on_one_node_hold_on_the_other() {
    let Some(_) = on_postgres("two nodes, shared key and audit") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes(&dir.path().join("pds.redb"));
    // the sandbox development key lives in the database: a token minted for it works on both
    let (bo_a, bo_b) = (a.api_as("back-office"), b.api_as("back-office"));
    let r = bo_a
        .patch_current_because(
            FULL,
            json!([{"op": "replace", "path": "/gender", "value": "unknown"}]),
            "two-node audit",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // the audit trail written through one node is read through the other
    let audit = bo_b.get(&format!("/_audit?patient={FULL}")).await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    assert!(
        audit.body.to_string().contains("two-node audit"),
        "{}",
        audit.body
    );
}

#[test]
fn every_search_shape_is_served_by_an_index() {
    let Some(_) = on_postgres("search plans") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    // a few thousand records, so that the statistics are not those of an empty table
    let data = dir.path().join("patients.ndjson");
    let out = Command::new(BIN)
        .args(["generate", "--count", "3000", "--seed", "7", "--out"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = Command::new(BIN)
        .arg("import")
        .args(store_of(&db))
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let shapes = [
        "family=Smith&birthdate=eq2010-10-22",
        "family=Sm*&gender=female&birthdate=eq2010-10-22",
        "family=Smith&birthdate=ge2010-01-01&birthdate=le2010-12-31",
        "family=Smith&birthdate=2010-10-22&phone=01632960587",
        "family=Smith&birthdate=2010-10-22&email=jane.smith@example.com",
        "family=Smith&birthdate=eq2010-10-22&_history=true",
        "_fuzzy-match=true&family=Smith&given=Jane&birthdate=2010-10-22",
        "_fuzzy-match=true&given=Jane&gender=female&address-postalcode=LS16AE&birthdate=2010-10-22",
    ];
    for shape in shapes {
        let out = Command::new(BIN)
            .arg("explain")
            .args(store_of(&db))
            .arg(shape)
            .output()
            .unwrap();
        let plans = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{shape}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lookups: Vec<&str> = plans
            .split("\n\n")
            .filter(|p| !p.trim().is_empty())
            .collect();
        assert!(!lookups.is_empty(), "{shape}: no lookup");
        for plan in lookups {
            assert!(plan.contains("Index"), "{shape}: {plan}");
            assert!(!plan.contains("Seq Scan"), "{shape}: {plan}");
        }
    }
}

#[test]
fn migrations_are_idempotent_and_a_newer_schema_is_refused() {
    let Some(base) = on_postgres("migrations") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = postgres_database(base, &dir.path().join("pds.redb"));
    let migrate = || {
        Command::new(BIN)
            .args(["migrate", "--store", &url])
            .output()
            .unwrap()
    };
    let first = migrate();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("applied migration(s) 1, 2, 3"));
    let again = migrate();
    assert!(again.status.success());
    let again = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.contains("up to date"),
        "the second run changes nothing: {again}"
    );
    // nodes starting together on a new database take turns: one migrates, the others find
    // the schema as it left it
    let url2 = postgres_database(base, &dir.path().join("racing.redb"));
    let racing: Vec<_> = (0..4)
        .map(|_| {
            let url = url2.clone();
            std::thread::spawn(move || {
                Command::new(BIN)
                    .args(["migrate", "--store", &url])
                    .output()
                    .unwrap()
                    .status
                    .success()
            })
        })
        .collect();
    assert!(racing.into_iter().all(|t| t.join().unwrap()));
    // a schema from a later release: neither migrate nor serve touches it
    pg(
        &url,
        "INSERT INTO pds_schema (version, name) VALUES (9999, 'from the future')",
    );
    let refused = migrate();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("9999") && err.contains("newer"), "{err}");
    let serve = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--store", &url])
        .output()
        .unwrap();
    assert!(!serve.status.success());
    assert!(String::from_utf8_lossy(&serve.stderr).contains("newer"));
}

/// A PostgreSQL server of the test's own (initdb in a temporary directory), so that it can be
/// killed without disturbing the rest of the suite. Run as the `postgres` user when the tests
/// run as root (PostgreSQL refuses to run as root).
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
    server: Option<Child>,
}

impl Cluster {
    fn bin() -> PathBuf {
        if let Ok(dir) = std::env::var("PDS_TEST_PG_BIN") {
            return dir.into();
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL binaries in /usr/lib/postgresql (or PDS_TEST_PG_BIN)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .collect();
        found.sort();
        found.pop().expect("an initdb under /usr/lib/postgresql")
    }

    fn command(&self, program: &str) -> Command {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.user {
            c.uid(uid).gid(gid);
        }
        c
    }

    fn new() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: getuid has no preconditions; getpwnam reads a static record we copy at once.
        let user = unsafe {
            if libc::getuid() != 0 {
                None
            } else {
                let pw = libc::getpwnam(c"postgres".as_ptr());
                assert!(!pw.is_null(), "running as root needs a postgres user");
                Some(((*pw).pw_uid, (*pw).pw_gid))
            }
        };
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Cluster {
            bin: Cluster::bin(),
            dir,
            port,
            user,
            server: None,
        };
        let out = cluster
            .command("initdb")
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "-D"])
            .arg(cluster.data())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (in a process group of its own) and waits until it takes connections.
    fn start(&mut self) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-k")
            .arg(self.dir.path())
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self
                .command("pg_isready")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .output()
                .unwrap();
            if ready.status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL to the server and every backend at once: a crash, not a shutdown.
    fn crash(&mut self) {
        if let Some(mut child) = self.server.take() {
            // SAFETY: signals the process group the server leads.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            child.wait().unwrap();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.crash();
    }
}

/// One acknowledged change: the record, the version it made, the value it set, and when.
type Acked = (String, u32, String, Instant);

/// PATCHes `id` over and over until `until`, each change retried with its own request id on a
/// 503 until answered. Returns the acknowledged changes and how many 503s were seen; any
/// other answer fails the test.
async fn keep_patching(api: Api, id: &'static str, until: Instant) -> (Vec<Acked>, usize) {
    let values = ["male", "female", "unknown"];
    let mut acked = Vec::new();
    let mut unavailable = 0;
    let mut version = loop {
        let r = api.get(&format!("/Patient/{id}")).await;
        if r.status == 200 {
            break r.version();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut k = 0usize;
    while Instant::now() < until {
        let value = values[k % values.len()];
        k += 1;
        let rid = request_id();
        let if_match = format!("W/\"{version}\"");
        loop {
            let r = api
                .send(
                    "PATCH",
                    &format!("/Patient/{id}"),
                    &[
                        ("X-Request-ID", &rid),
                        ("If-Match", &if_match),
                        ("Content-Type", "application/json-patch+json"),
                    ],
                    // `add` sets it whether the record has one or not
                    Some(
                        json!({"patches": [{"op": "add", "path": "/gender", "value": value}]})
                            .to_string(),
                    ),
                )
                .await;
            match r.status {
                200 => {
                    assert_eq!(r.body["gender"], value);
                    version = r.version();
                    acked.push((id.to_string(), version, value.to_string(), Instant::now()));
                    break;
                }
                503 => {
                    unavailable += 1;
                    assert_eq!(r.code(), "SERVICE_UNAVAILABLE", "{}", r.body);
                    assert!(r.header("retry-after").is_some(), "503 says when to retry");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => panic!("{id}: {other} while the database was down: {}", r.body),
            }
        }
    }
    (acked, unavailable)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_server_killed_under_load_loses_no_acknowledged_change() {
    let Some(_) = on_postgres("database crash") else {
        return;
    };
    let mut cluster = Cluster::new();
    cluster.start();
    let dir = tempfile::tempdir().unwrap();
    let store = vec!["--store".to_string(), cluster.url()];
    let server = Server::start_on(&store, &dir.path().join("pds.redb"), &["--demo"]);
    let records = [
        FULL,
        MINIMAL,
        HOME_AND_TEMP,
        SEVERAL_TELECOMS,
        COMPOUND_GIVEN,
    ];
    let start = Instant::now();
    let until = start + Duration::from_secs(7);
    let workers: Vec<_> = records
        .iter()
        .map(|id| tokio::spawn(keep_patching(server.api(), id, until)))
        .collect();
    // load for a second, then the database dies and stays down for two
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.crash();
        std::thread::sleep(Duration::from_secs(2));
        cluster.start();
        cluster
    })
    .await
    .unwrap();
    let restarted = Instant::now();
    let mut acked: Vec<Acked> = Vec::new();
    let mut unavailable = 0;
    for w in workers {
        let (a, u) = w.await.unwrap();
        acked.extend(a);
        unavailable += u;
    }
    eprintln!(
        "{} changes acknowledged, {unavailable} answers 503 while the database was down",
        acked.len()
    );
    assert!(unavailable > 0, "the crash was felt: some requests got 503");
    let per_record: HashMap<&str, Vec<&Acked>> = acked.iter().fold(HashMap::new(), |mut m, a| {
        m.entry(a.0.as_str()).or_default().push(a);
        m
    });
    let api = Api {
        token: Some(mint_on(&store, "back-office", &[])),
        ..server.api()
    };
    for (id, changes) in &per_record {
        let current = api.get_patient(id).await;
        let last = changes.last().unwrap();
        assert_eq!(
            current.version(),
            last.1,
            "{id}: the last acknowledged version is current"
        );
        assert_eq!(current.body["gender"], last.2.as_str());
        for (_, version, value, _) in changes {
            let v = api.get(&format!("/Patient/{id}/_history/{version}")).await;
            assert_eq!(v.status, 200, "{id} v{version}: {}", v.body);
            assert_eq!(v.body["gender"], value.as_str(), "{id} v{version}");
        }
    }
    assert!(
        acked.len() > records.len() * 3,
        "the load ran: {}",
        acked.len()
    );
    assert!(
        acked.iter().any(|a| a.3 > restarted),
        "the pool reconnected by itself: changes were acknowledged after the restart"
    );
}

#[tokio::test]
async fn status_says_not_ready_while_the_database_server_is_down() {
    let Some(_) = on_postgres("readiness with the database server down") else {
        return;
    };
    let mut cluster = Cluster::new();
    cluster.start();
    let dir = tempfile::tempdir().unwrap();
    let store = vec!["--store".to_string(), cluster.url()];
    let server = Server::start_on(&store, &dir.path().join("pds.redb"), &["--demo"]);
    let api = server.api();
    let status = || api.send("GET", "/_status", &[], None);
    let ready = status().await;
    assert_eq!(
        (
            ready.status,
            ready.body["checks"]["store"]["status"].as_str()
        ),
        (200, Some("pass")),
        "{}",
        ready.body
    );
    let mut cluster = tokio::task::spawn_blocking(move || {
        cluster.crash();
        cluster
    })
    .await
    .unwrap();
    let started = Instant::now();
    let down = status().await;
    down.expect(503, "SERVICE_UNAVAILABLE");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered within the check's timeout"
    );
    let why = down.body["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.starts_with("Not ready: ") && why.contains("storage unavailable"),
        "{}",
        down.body
    );
    assert!(
        !why.contains(&cluster.url()),
        "the reason shows no connection URL: {why}"
    );
    assert_eq!(api.send("GET", "/_ping", &[], None).await.status, 200);
    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.start();
        cluster
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while status().await.status != 200 {
        assert!(Instant::now() < deadline, "not ready after the restart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Tables in the database at `url`.
fn tables(url: &str) -> i64 {
    pg(
        url,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
    )[0]
    .get(0)
    .unwrap()
    .parse()
    .unwrap()
}

#[test]
fn commands_that_only_read_leave_a_database_no_server_used_untouched() {
    let Some(base) = on_postgres("read-only commands") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = postgres_database(base, &dir.path().join("never-served.redb"));
    // token (sandbox), export, verify and explain refuse it, and create nothing in it: no
    // schema, no development key that a server would later take for its own
    let attempts: [&[&str]; 4] = [
        &["token", "--role", "back-office", "--store", &url],
        &["export", "--store", &url],
        &[
            "verify",
            "--from",
            &url,
            "--to",
            &format!("redb:{}", dir.path().join("x.redb").display()),
        ],
        &[
            "explain",
            "--store",
            &url,
            "family=Smith&birthdate=eq2010-10-22",
        ],
    ];
    for args in attempts {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing printed");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not a pds-facade database"), "{args:?}: {err}");
        assert_eq!(tables(&url), 0, "{args:?} created tables");
    }
    assert!(!dir.path().join("x.redb").exists(), "nor a redb file");
}

#[test]
fn a_database_server_that_cannot_be_reached_stops_start_up_clearly() {
    if on_postgres("unreachable server").is_none() {
        return;
    }
    // a port nothing listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://pds:secret@127.0.0.1:{port}/pds");
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--store", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "never said it was listening");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot use the PostgreSQL store"), "{err}");
    assert!(!err.contains("secret"), "the password is not shown: {err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "gave up in good time"
    );
}

#[test]
fn a_server_that_could_lose_acknowledged_commits_is_refused() {
    let Some(base) = on_postgres("durability settings") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = postgres_database(base, &dir.path().join("lax.redb"));
    let name = url.rsplit('/').next().unwrap();
    pg(
        base,
        &format!("ALTER DATABASE {name} SET synchronous_commit = off"),
    );
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--demo",
            "--store",
            &url,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "never said it was listening");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("synchronous_commit = off"), "{err}");
    assert_eq!(tables(&url), 0, "nothing was written to it");
}
