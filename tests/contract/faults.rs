//! Storage faults and transport abuse: a full disk, a read-only database file, slow clients and
//! header floods. Each gets a clear answer, nothing half-done is stored, and the service comes
//! back by itself when the cause goes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

/// Sets the server's file-size limit (`ulimit -f`, soft limit only). A limit of 0 makes every
/// write to the database fail the way a full disk does (EFBIG instead of ENOSPC), without root,
/// a loop device or a special file system; the server ignores SIGXFSZ so the write just fails.
pub(crate) fn limit_file_size(server: &Server, bytes: Option<u64>) {
    let limit = libc::rlimit {
        rlim_cur: bytes.unwrap_or(libc::RLIM_INFINITY),
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit reads `limit` and writes nothing (old limit not requested).
    let rc = unsafe {
        libc::prlimit(
            server.pid() as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

async fn patch_with(api: &Api, id: &str, version: u32, rid: &str, gender: &str) -> Reply {
    let if_match = format!("W/\"{version}\"");
    api.send(
        "PATCH",
        &format!("/Patient/{id}"),
        &[
            ("X-Request-ID", rid),
            ("If-Match", &if_match),
            ("Content-Type", "application/json-patch+json"),
        ],
        Some(
            json!({"patches": [{"op": "replace", "path": "/gender", "value": gender}]}).to_string(),
        ),
    )
    .await
}

#[tokio::test]
async fn a_full_disk_answers_503_and_the_service_recovers_when_space_returns() {
    if redb_only("the file size limit on the database file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let v = api.get_patient(FULL).await.version();

    limit_file_size(&server, Some(0));
    let rid = request_id();
    let failed = patch_with(&api, FULL, v, &rid, "unknown").await;
    failed.expect(503, "SERVICE_UNAVAILABLE");
    assert!(
        failed.header("retry-after").is_some(),
        "{:?}",
        failed.headers
    );
    // a second change fails the same way; reads show the old version or 503, never the change
    patch_with(&api, FULL, v, &request_id(), "male")
        .await
        .expect(503, "SERVICE_UNAVAILABLE");
    let during = api.get_patient(FULL).await;
    match during.status {
        200 => assert_eq!(during.version(), v, "{}", during.body),
        503 => assert_eq!(during.code(), "SERVICE_UNAVAILABLE"),
        s => panic!("GET during the fault answered {s}: {}", during.body),
    }

    // space comes back: the client's retry (same X-Request-ID) goes through, exactly once
    limit_file_size(&server, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let r = patch_with(&api, FULL, v, &rid, "unknown").await;
        if r.status != 503 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.version(), v + 1);
    let again = patch_with(&api, FULL, v, &rid, "unknown").await;
    assert_eq!((again.status, again.version()), (200, v + 1));
    let history = api.get(&format!("/Patient/{FULL}/_history")).await;
    assert_eq!(history.body["total"], json!(v + 1), "{}", history.body);

    // durable, and the indexes agree with the records
    let db = server.db.clone();
    assert!(server.stop().success());
    let (ok, report) = check_indexes(&db);
    assert!(ok, "{report}");
    let server = Server::start(&db, &[]);
    let after = server.api().get_patient(FULL).await;
    assert_eq!(after.version(), v + 1);
    assert_eq!(after.body["gender"], "unknown");
}

#[test]
fn a_read_only_database_is_refused_at_start_up_and_opens_once_writable() {
    if redb_only("file permissions on the database file") {
        return;
    }
    use std::os::unix::fs::{chown, PermissionsExt};
    use std::os::unix::process::CommandExt;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let server = Server::start(&db, &["--demo"]);
    assert!(server.stop().success());
    let before = std::fs::read(&db).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();

    // root writes through file permissions, so as root the server runs as `nobody`
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    const NOBODY: u32 = 65534;
    let owner = |uid: u32| {
        chown(dir.path(), Some(uid), None).unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            chown(entry.unwrap().path(), Some(uid), None).unwrap();
        }
    };
    let mut serve = std::process::Command::new(BIN);
    serve
        .args(["serve", "--db"])
        .arg(&db)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if root {
        owner(NOBODY);
        serve.uid(NOBODY);
    }
    let mut child = serve.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started on a read-only database");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("cannot be opened for writing") && stderr.contains(db.to_str().unwrap()),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before, "the file was changed");

    // writable again: the service starts on the same data
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    if root {
        owner(0);
    }
    let server = Server::start(&db, &[]);
    let r = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(server.api().get_patient(FULL));
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Sends raw bytes on a new connection and reads until the server closes it (or 20 s pass).
fn raw_exchange(server: &Server, request: &[u8]) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // the server may answer and close before it has read everything (a header flood)
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (stream, String::from_utf8_lossy(&answer).into_owned())
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

fn ping_works(server: &Server) {
    let (_, answer) = raw_exchange(
        server,
        b"GET /_ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_line(&answer), "HTTP/1.1 200 OK", "{answer}");
}

#[test]
fn slow_clients_are_cut_off_and_others_are_served_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("pds.redb"),
        &["--demo", "--client-timeout", "1s"],
    );

    // headers that never finish: the connection is closed, with other clients served meanwhile
    let mut stalled = TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    stalled
        .write_all(b"GET /_ping HTTP/1.1\r\nHost: t\r\nX-Request-ID: ")
        .unwrap();
    ping_works(&server);
    // still open just now (so what closes it below is the timeout, not a parse error)
    stalled.set_nonblocking(true).unwrap();
    let open = stalled.read(&mut [0u8; 1]);
    assert!(
        matches!(&open, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "{open:?}"
    );
    stalled.set_nonblocking(false).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut rest = Vec::new();
    let closed = stalled.read_to_end(&mut rest);
    assert!(
        closed.is_ok(),
        "a stalled request's connection stayed open: {closed:?}"
    );

    // a body that stops halfway: 408 OperationOutcome, nothing stored
    let body = r#"{"patches":[{"op":"replace","path":"/gender","value":"unknown"}]}"#;
    let head = format!(
        "PATCH /Patient/{FULL} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         X-Request-ID: {}\r\nIf-Match: W/\"1\"\r\nContent-Type: application/json-patch+json\r\n\
         Content-Length: {}\r\n\r\n{}",
        request_id(),
        body.len(),
        &body[..20]
    );
    let (_, answer) = raw_exchange(&server, head.as_bytes());
    assert_eq!(
        status_line(&answer),
        "HTTP/1.1 408 Request Timeout",
        "{answer}"
    );
    assert!(
        answer.contains("application/fhir+json") && answer.contains("UNABLE_TO_CALL_SERVICE"),
        "{answer}"
    );
    let r = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(server.api().get_patient(FULL));
    assert_eq!(
        (r.version(), r.body["gender"].as_str()),
        (1, Some("female"))
    );
}

#[test]
fn header_floods_get_431_and_do_not_hurt_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let flood = |count: usize, value_len: usize| {
        let mut request = String::from("GET /_ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
        for i in 0..count {
            request.push_str(&format!("X-Flood-{i}: {}\r\n", "v".repeat(value_len)));
        }
        request.push_str("\r\n");
        request
    };
    // above the service's limits: a 431 OperationOutcome
    for (what, request) in [
        ("150 headers", flood(150, 8)),
        ("20 KiB of one header", flood(1, 20 * 1024)),
    ] {
        let (_, answer) = raw_exchange(&server, request.as_bytes());
        assert_eq!(
            status_line(&answer),
            "HTTP/1.1 431 Request Header Fields Too Large",
            "{what}: {answer}"
        );
        assert!(
            answer.contains("application/fhir+json") && answer.contains("INVALID_VALUE"),
            "{what}: {answer}"
        );
    }
    // far above the HTTP parser's limits: refused at the connection (431 or closed)
    for request in [flood(20_000, 8), flood(1, 2 * 1024 * 1024)] {
        let (_, answer) = raw_exchange(&server, request.as_bytes());
        assert!(
            answer.is_empty() || status_line(&answer).starts_with("HTTP/1.1 431"),
            "{}",
            status_line(&answer)
        );
    }
    ping_works(&server);
}

#[test]
fn shutdown_finishes_in_flight_requests_and_takes_no_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let address = server.base.trim_start_matches("http://").to_string();
    let body = r#"{"patches":[{"op":"replace","path":"/gender","value":"unknown"}]}"#;
    let mut in_flight = TcpStream::connect(&address).unwrap();
    write!(
        in_flight,
        "PATCH /Patient/{FULL} HTTP/1.1\r\nHost: t\r\nX-Request-ID: {}\r\nIf-Match: W/\"1\"\r\n\
         Content-Type: application/json-patch+json\r\nContent-Length: {}\r\n\r\n{}",
        request_id(),
        body.len(),
        &body[..10]
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.terminate();
    // the listener closes: new connections are refused
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&address).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    // the request that was already being received completes and is answered
    in_flight.write_all(&body.as_bytes()[10..]).unwrap();
    in_flight
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = in_flight.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status_line(&answer), "HTTP/1.1 200 OK", "{answer}");
    assert!(answer.contains("etag: W/\"2\""), "{answer}");
    let db = server.db.clone();
    assert!(server.wait().success());
    let server = Server::start(&db, &[]);
    let r = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(server.api().get_patient(FULL));
    assert_eq!(
        (r.version(), r.body["gender"].as_str()),
        (2, Some("unknown"))
    );
}

/// `/_status` (readiness) with no X-Request-ID: 200 `pass`, or 503 SERVICE_UNAVAILABLE with
/// the reason.
async fn readiness(api: &Api) -> Reply {
    api.send("GET", "/_status", &[], None).await
}

#[tokio::test]
async fn status_says_not_ready_while_the_disk_is_full_and_ready_again_after() {
    if redb_only("the file size limit on the database file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let ready = readiness(&api).await;
    assert_eq!(
        (ready.status, ready.body["status"].as_str()),
        (200, Some("pass")),
        "{}",
        ready.body
    );
    assert_eq!(ready.body["checks"]["store"]["status"], "pass");

    limit_file_size(&server, Some(0));
    let not_ready = readiness(&api).await;
    not_ready.expect(503, "SERVICE_UNAVAILABLE");
    let why = not_ready.body["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.starts_with("Not ready: ") && why.contains("storage unavailable"),
        "{}",
        not_ready.body
    );
    // /_ping is liveness: the process is up, whatever its store says
    assert_eq!(api.send("GET", "/_ping", &[], None).await.status, 200);

    limit_file_size(&server, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = readiness(&api).await;
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still not ready once space came back: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // and the demo data is all there, unchanged by the checks
    assert_eq!(api.get_patient(FULL).await.version(), 1);
}
