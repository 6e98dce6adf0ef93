//! The OpenAPI document as client generators take it: `openapi-spec-validator` accepts it,
//! `openapi-python-client` generates every operation without a warning and the generated client
//! reads, searches and PATCHes a demo patient (tests/clients/client.py), and the types
//! `openapi-typescript` generates check (`tsc --strict`) the README's PATCH bodies and both
//! shapes of a search answer (tests/clients/bodies.ts).
//!
//! `PDS_TEST_CLIENTS` is the directory holding the tools: `clients-venv/` (a Python venv with
//! openapi-spec-validator, openapi-python-client and the generated client's httpx, attrs and
//! python-dateutil) and `clients-npm/` (an npm prefix with openapi-typescript and typescript);
//! `.ci/run` installs them under `target/`. Without it the test says so and passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::helpers::{mint, Server, ROOT};

/// The directory with the tool installs, if the client tests are on.
fn tools() -> Option<PathBuf> {
    let dir = std::env::var("PDS_TEST_CLIENTS")
        .ok()
        .filter(|d| !d.is_empty());
    if dir.is_none() {
        eprintln!(
            "generated-client tests not run: set PDS_TEST_CLIENTS to the directory holding \
             clients-venv/ and clients-npm/; .ci/run shows how"
        );
    }
    dir.map(PathBuf::from)
}

/// Runs `command` in the repository root; panics with its output unless it succeeds.
fn run(what: &str, command: &mut Command) -> String {
    let out: Output = command
        .current_dir(ROOT)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({command:?}): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("--- {what}\n{text}");
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}

fn tool(path: PathBuf) -> Command {
    assert!(path.exists(), "{} is not installed", path.display());
    Command::new(path)
}

#[test]
fn generated_clients_work() {
    let Some(tools) = tools() else { return };
    let venv = tools.join("clients-venv/bin");
    let npm = tools.join("clients-npm/node_modules/.bin");
    let document = Path::new(ROOT).join("openapi/openapi.json");
    let work = tempfile::tempdir().unwrap();

    let said = run(
        "openapi-spec-validator",
        tool(venv.join("openapi-spec-validator")).arg(&document),
    );
    assert!(
        said.contains(": OK"),
        "the validator did not say OK:\n{said}"
    );

    // Python: generate (any warning fails), then drive a demo server with the client
    let package = work.path().join("python/pds_facade_client");
    let said = run(
        "openapi-python-client generate",
        tool(venv.join("openapi-python-client"))
            .args(["generate", "--meta", "none", "--fail-on-warning", "--path"])
            .arg(&document)
            .arg("--output-path")
            .arg(&package)
            .arg("--config")
            .arg(Path::new(ROOT).join("tests/clients/openapi-python-client.yaml")),
    );
    assert!(
        !said.to_ascii_lowercase().contains("warning"),
        "openapi-python-client warned:\n{said}"
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let token = mint(&server.db, "healthcare-worker", &[]);
    let said = run(
        "tests/clients/client.py",
        tool(venv.join("python"))
            .arg(Path::new(ROOT).join("tests/clients/client.py"))
            .args(["--base", &server.base, "--token", &token])
            .env("PYTHONPATH", work.path().join("python")),
    );
    assert!(said.contains("all checks passed"), "{said}");

    // TypeScript: generate the types beside a copy of bodies.ts and its tsconfig, type-check
    let ts = work.path().join("ts");
    std::fs::create_dir_all(&ts).unwrap();
    for file in ["bodies.ts", "tsconfig.json"] {
        std::fs::copy(
            Path::new(ROOT).join("tests/clients").join(file),
            ts.join(file),
        )
        .unwrap();
    }
    run(
        "openapi-typescript",
        tool(npm.join("openapi-typescript"))
            .arg(&document)
            .arg("-o")
            .arg(ts.join("api.d.ts")),
    );
    let types = std::fs::read_to_string(ts.join("api.d.ts")).unwrap();
    let components = types
        .split("export interface components")
        .nth(1)
        .and_then(|rest| rest.split("\nexport ").next())
        .expect("components in api.d.ts");
    assert!(
        !components.contains("Record<string, never>"),
        "a component is typed as an object that holds nothing"
    );
    run(
        "tsc --strict",
        tool(npm.join("tsc"))
            .args(["--strict", "--noEmit", "-p"])
            .arg(ts.join("tsconfig.json")),
    );
}
