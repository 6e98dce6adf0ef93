//! The web console in a real browser: headless Chromium driven by Playwright
//! (tests/browser/run.py runs the journeys in tests/browser/journeys.py against a demo server),
//! with an axe-core accessibility check and a screenshot of every screen they name.
//!
//! `PDS_TEST_BROWSER` is a Python with Playwright installed and `PDS_TEST_AXE` axe-core's
//! `axe.min.js`; `.ci/run` sets both up. Without `PDS_TEST_BROWSER` the test says so and passes.

use std::path::Path;
use std::process::Command;

use crate::helpers::{Server, ROOT};

/// The Python to run the journeys with, if the browser tests are on.
fn python() -> Option<String> {
    let python = std::env::var("PDS_TEST_BROWSER")
        .ok()
        .filter(|p| !p.is_empty());
    if python.is_none() {
        eprintln!(
            "browser tests not run: set PDS_TEST_BROWSER to a Python with Playwright \
             (and PDS_TEST_AXE to axe-core's axe.min.js); .ci/run shows how"
        );
    }
    python
}

#[tokio::test]
async fn console_journeys_in_chromium() {
    let Some(python) = python() else { return };
    let axe = std::env::var("PDS_TEST_AXE")
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| format!("{ROOT}/target/browser-axe/node_modules/axe-core/axe.min.js"));
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let base = server.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(Path::new(ROOT).join("tests/browser/run.py"))
            .args(["--base", &base, "--axe", &axe, "--shots"])
            .arg(&shots)
            .current_dir(ROOT)
            .output()
            .unwrap_or_else(|e| panic!("cannot run PDS_TEST_BROWSER={python}: {e}"))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser journeys failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server log\n{}",
        out.status,
        std::fs::read_to_string(&server.log).unwrap_or_default()
    );
}
