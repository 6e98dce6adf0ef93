//! The command line: persistence across restarts, a locked database, `import` in each file
//! form, and the all-or-nothing rule per file.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::helpers::*;

fn patient(nhs: &str, family: &str) -> Value {
    json!({"resourceType": "Patient", "id": nhs,
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}],
        "name": [{"use": "usual", "family": family, "given": ["Test"]}],
        "gender": "female", "birthDate": "1990-01-01",
        "address": [{"use": "home", "line": ["1 Test Street", "", "Testtown"], "postalCode": "TE1 1ST"}]})
}

fn import(db: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("import")
        .args(store_of(db))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test]
async fn changes_survive_a_restart_with_their_version() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let r = api
        .patch(
            FULL,
            1,
            json!({"patches": [{"op": "replace", "path": "/gender", "value": "unknown"}]}),
        )
        .await;
    assert_eq!(r.status, 200);
    let status = server.stop();
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");

    // restarting with --demo does not reload over existing data
    let server = Server::start(&dir.path().join("pds.redb"), &["--demo"]);
    let r = server.api().get_patient(FULL).await;
    assert_eq!(
        (r.header("etag"), r.body["gender"].as_str()),
        (Some("W/\"2\""), Some("unknown"))
    );
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("not loaded"), "{log}");
}

#[tokio::test]
async fn a_second_server_on_the_same_database_is_refused_clearly() {
    if redb_only("the single-process lock on the database file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _server = Server::demo(&dir);
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("pds.redb"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already open in another process"), "{err}");
}

#[tokio::test]
async fn imports_each_file_form() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let single = dir.path().join("one.json");
    let mut one = patient("9000000009", "Single");
    one["meta"] = json!({"versionId": "3"});
    std::fs::write(&single, one.to_string()).unwrap();
    let bundle = dir.path().join("bundle.json");
    std::fs::write(&bundle, json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": patient("9000000017", "Bundled")}, {"resource": patient("9000000025", "Bundled")}]}).to_string()).unwrap();
    let ndjson = dir.path().join("many.ndjson");
    let minimal = json!({"resourceType": "Patient", "id": "9000000041", "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000041"}]});
    std::fs::write(
        &ndjson,
        format!("{}\n{}\n", patient("9000000033", "Lined"), minimal),
    )
    .unwrap();

    let (ok, out) = import(
        &db,
        &[
            single.to_str().unwrap(),
            bundle.to_str().unwrap(),
            ndjson.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("summary: 5 loaded, 0 file(s) rejected"),
        "{out}"
    );

    let server = Server::start(&db, &[]);
    let api = server.api();
    let r = api.get_patient("9000000009").await;
    assert_eq!(
        r.header("etag"),
        Some("W/\"3\""),
        "meta.versionId is the starting version"
    );
    assert_eq!(
        r.body["address"][0]["line"],
        json!(["1 Test Street", "Testtown"]),
        "blank lines dropped"
    );
    assert!(
        r.body["name"][0]["id"].is_string(),
        "list items get object ids"
    );
    assert_eq!(
        api.get_patient("9000000025").await.body["name"][0]["family"],
        "Bundled"
    );
    assert_eq!(api.get_patient("9000000041").await.status, 200);
    // the imported record can be patched like any other
    let id = r.body["name"][0]["id"].as_str().unwrap();
    let r = api
        .patch(
            "9000000009",
            3,
            json!({"patches": [{"op": "test", "path": "/name/0/id", "value": id},
        {"op": "replace", "path": "/name/0/family", "value": "Changed"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn a_bad_record_rejects_its_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let good = dir.path().join("good.json");
    std::fs::write(&good, patient("9000000009", "Good").to_string()).unwrap();
    let mixed = dir.path().join("mixed.ndjson");
    let mut bad = patient("9000000025", "Bad");
    bad["gender"] = json!("mal");
    let mut wrong_id = patient("9000000033", "Wrong");
    wrong_id["id"] = json!("9000000034");
    std::fs::write(
        &mixed,
        format!("{}\n{}\n{}\n", patient("9000000017", "Fine"), bad, wrong_id),
    )
    .unwrap();

    let (ok, out) = import(&db, &[good.to_str().unwrap(), mixed.to_str().unwrap()]);
    assert!(!ok, "a rejected file makes the command fail");
    assert!(
        out.contains("mixed.ndjson: line 2:")
            && out.contains("Invalid value - 'mal' in field 'gender'"),
        "{out}"
    );
    assert!(
        out.contains("mixed.ndjson: line 3:"),
        "every problem is reported: {out}"
    );
    assert!(
        out.contains("summary: 1 loaded, 1 file(s) rejected"),
        "{out}"
    );

    let server = Server::start(&db, &[]);
    let api = server.api();
    assert_eq!(api.get_patient("9000000009").await.status, 200);
    assert_eq!(
        api.get_patient("9000000017").await.status,
        404,
        "nothing of the rejected file was loaded"
    );
}

#[tokio::test]
async fn existing_records_need_replace() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let file = dir.path().join("p.json");
    std::fs::write(&file, patient("9000000009", "First").to_string()).unwrap();
    assert!(import(&db, &[file.to_str().unwrap()]).0);
    std::fs::write(&file, patient("9000000009", "Second").to_string()).unwrap();
    let (ok, out) = import(&db, &[file.to_str().unwrap()]);
    assert!(
        !ok && out.contains("already exists") && out.contains("--replace"),
        "{out}"
    );
    let (ok, out) = import(&db, &["--replace", file.to_str().unwrap()]);
    assert!(ok, "{out}");
    let server = Server::start(&db, &[]);
    let r = server.api().get_patient("9000000009").await;
    assert_eq!(
        (r.header("etag"), r.body["name"][0]["family"].as_str()),
        (Some("W/\"2\""), Some("Second")),
        "replace adds a version"
    );
}

#[tokio::test]
async fn generated_patients_are_deterministic_and_importable() {
    let dir = tempfile::tempdir().unwrap();
    let gen = |seed: &str, file: &str| {
        let out = dir.path().join(file);
        let status = Command::new(BIN)
            .args(["generate", "--count", "500", "--seed", seed, "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        (out.clone(), std::fs::read(out).unwrap())
    };
    let (a, bytes_a) = gen("7", "a.ndjson");
    let (_, bytes_b) = gen("7", "b.ndjson");
    let (_, bytes_c) = gen("8", "c.ndjson");
    assert_eq!(bytes_a, bytes_b, "same seed, same patients");
    assert_ne!(bytes_a, bytes_c);
    assert_eq!(bytes_a.iter().filter(|b| **b == b'\n').count(), 500);
    let db = dir.path().join("pds.redb");
    let (ok, out) = import(&db, &[a.to_str().unwrap()]);
    assert!(ok && out.contains("summary: 500 loaded"), "{out}");
    let (ok, out) = check_indexes(&db);
    assert!(ok, "{out}");
}

#[test]
fn national_patients_sample_with_every_and_import_from_a_pipe() {
    let gen = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["generate", "--shape", "national", "--seed", "5"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let sample = gen(&["--count", "50", "--every", "10"]);
    let all = gen(&["--count", "50"]);
    assert_eq!(sample.lines().count(), 5);
    assert_eq!(
        sample.lines().collect::<Vec<_>>(),
        all.lines().step_by(10).collect::<Vec<_>>()
    );
    // the uniform shape has no duplicates to merge
    let out = Command::new(BIN)
        .args(["generate", "--count", "5", "--merges-out", "/dev/null"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--shape national"));

    // streamed into import through a pipe (/dev/stdin), with the merges beside it
    let dir = tempfile::tempdir().unwrap();
    let merges = dir.path().join("merges.txt");
    let mut generate = Command::new(BIN)
        .args([
            "generate",
            "--shape",
            "national",
            "--count",
            "3000",
            "--merges-out",
        ])
        .arg(&merges)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let db = dir.path().join("pds.redb");
    let out = Command::new(BIN)
        .arg("import")
        .args(store_of(&db))
        .arg("/dev/stdin")
        .stdin(generate.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(generate.wait().unwrap().success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("summary: 3000 loaded"),
        "{text}"
    );
    // a pipe has no length: progress never claims a share of it
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(
        !progress
            .lines()
            .any(|l| l.starts_with("importing") && l.contains('%')),
        "{progress}"
    );
    let merges = std::fs::read_to_string(&merges).unwrap();
    assert!(merges.lines().count() >= 3, "{merges}");
    assert!(merges
        .lines()
        .all(|l| l.len() == 21 && l.as_bytes()[10] == b' '));
    let (ok, out) = check_indexes(&db);
    assert!(ok, "{out}");
}

/// `pds-facade generate --count N --seed S --out FILE`.
fn generate(dir: &Path, count: usize, name: &str) -> std::path::PathBuf {
    let out = dir.join(name);
    let status = Command::new(BIN)
        .args([
            "generate",
            "--count",
            &count.to_string(),
            "--seed",
            "11",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(status.status.success());
    out
}

#[tokio::test]
async fn a_problem_many_batches_into_a_file_undoes_the_batches_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let data = generate(dir.path(), 9_000, "p.ndjson");
    let lines: Vec<String> = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    // a bad record past two whole batches of 4,000 records
    let mut bad = lines.clone();
    bad[8_500] = bad[8_500].replace("\"gender\":\"", "\"gender\":\"x");
    let bad_file = dir.path().join("bad.ndjson");
    std::fs::write(&bad_file, bad.join("\n")).unwrap();
    let (ok, out) = import(&db, &["--batch-size", "4000", bad_file.to_str().unwrap()]);
    assert!(!ok && out.contains("line 8501:"), "{out}");
    // the same number twice, far apart: the second copy is refused, and the first with it
    let mut twice = lines[..8_000].to_vec();
    twice.push(lines[10].clone());
    let twice_file = dir.path().join("twice.ndjson");
    std::fs::write(&twice_file, twice.join("\n")).unwrap();
    let (ok, out) = import(&db, &["--batch-size", "4000", twice_file.to_str().unwrap()]);
    assert!(!ok && out.contains("already exists"), "{out}");
    // nothing of either file is stored: the good file loads in full
    let (ok, out) = import(&db, &[data.to_str().unwrap()]);
    assert!(ok && out.contains("summary: 9000 loaded"), "{out}");
    let (ok, out) = check_indexes(&db);
    assert!(ok, "{out}");
}

#[test]
fn each_import_transaction_holds_exactly_the_batch_size() {
    // workers take chunks of up to 1,000 lines; a batch of 1,500 is not a whole number of them
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let data = generate(dir.path(), 3_000, "p.ndjson");
    let out = Command::new(BIN)
        .args(["import", "--batch-size", "1500"])
        .args(store_of(&db))
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // one progress line as each batch goes to the store (each is half the file)
    let counts: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("importing"))
        .filter_map(|l| l.split(" records").next()?.rsplit('(').next())
        .collect();
    assert_eq!(counts, ["1500", "3000"], "{stderr}");
    let (ok, out) = check_indexes(&db);
    assert!(ok, "{out}");
}

#[test]
fn an_import_killed_midway_leaves_nothing_of_its_file() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let data = generate(dir.path(), 12_000, "p.ndjson");
    let mut child = Command::new(BIN)
        .args(["import", "--batch-size", "4000"])
        .args(store_of(&db))
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // a progress line as each batch goes to the store: at the second, the first is committed
    let mut progress = BufReader::new(child.stderr.take().unwrap()).lines();
    let second = progress.nth(1).unwrap().unwrap();
    assert!(second.contains("8000 records"), "{second}");
    child.kill().unwrap();
    child.wait().unwrap();
    let (ok, out) = check_indexes(&db);
    assert!(ok, "{out}");
    let (ok, out) = import(&db, &[data.to_str().unwrap()]);
    assert!(ok && out.contains("summary: 12000 loaded"), "{out}");
}

#[test]
fn token_refuses_a_database_that_does_not_exist() {
    if redb_only("a database file that is missing or not a database") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nowhere.redb");
    let out = Command::new(BIN)
        .args(["token", "--role", "back-office", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no token printed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "no key file or database was created"
    );
    // nor a directory, or an empty file, in its place
    let empty = dir.path().join("empty.redb");
    std::fs::write(&empty, b"").unwrap();
    for not_a_database in [dir.path().to_path_buf(), empty] {
        let out = Command::new(BIN)
            .args(["token", "--role", "back-office", "--db"])
            .arg(&not_a_database)
            .output()
            .unwrap();
        assert!(!out.status.success() && out.stdout.is_empty());
        assert!(String::from_utf8_lossy(&out.stderr).contains("is not a database"));
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no key file"
    );
}

#[test]
fn printing_commands_stop_quietly_when_the_reader_goes() {
    for args in [&["openapi"][..], &["generate", "--count", "200000"][..]] {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // read a little, then close the pipe
        {
            use std::io::Read;
            let mut first = [0u8; 10];
            child
                .stdout
                .as_mut()
                .unwrap()
                .read_exact(&mut first)
                .unwrap();
        }
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn every_serve_flag_can_come_from_the_environment() {
    // --help names a variable for each flag
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let blocks: Vec<&str> = help.split("\n      --").skip(1).collect();
    assert!(blocks.len() >= 15, "{help}");
    for block in blocks {
        let flag = block.split_whitespace().next().unwrap_or_default();
        assert!(
            block.contains("[env: PDS_"),
            "--{flag} names no environment variable in --help:\n{help}"
        );
    }
    // a server configured through the environment alone honours it
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("env.redb");
    let store = store_of(&db);
    let store_variable = match store[0].as_str() {
        "--db" => "PDS_DB",
        _ => "PDS_STORE",
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .env(store_variable, &store[1])
        .env("PDS_LISTEN", format!("127.0.0.1:{port}"))
        .env("PDS_DEMO", "true")
        .env("PDS_BASE_URL", "https://pds.example/base")
        .env("PDS_RATE_LIMIT", "3");
    let server = Server::spawn(command, &db);
    assert_eq!(
        server.base,
        format!("http://127.0.0.1:{port}"),
        "PDS_LISTEN"
    );
    let api = server.api();
    let found = api
        .get("/Patient?family=Smith&birthdate=eq2010-10-22&gender=female")
        .await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert!(
        found.body["entry"][0]["fullUrl"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://pds.example/base/Patient/")),
        "PDS_DEMO loaded the demo data, PDS_BASE_URL names it: {}",
        found.body
    );
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(api.get_patient(FULL).await.status);
    }
    assert!(statuses.contains(&429), "PDS_RATE_LIMIT=3: {statuses:?}");
}
