//! Authentication and roles: sandbox and secured modes, token forms, RS256/ES256 keys, and
//! what each role may do.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn sandbox_mode_roles_come_from_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    // no token: healthcare worker, restricted record redacted
    let anonymous = server.api().get_patient(RESTRICTED).await;
    assert!(anonymous.body.get("address").is_none());
    // back office sees everything
    let bo = server.api_as("back-office").get_patient(RESTRICTED).await;
    assert_eq!(bo.status, 200);
    assert_eq!(bo.body["address"][0]["postalCode"], "TR1 2HE");
    assert_eq!(bo.body["telecom"][0]["value"], "07700900203");
    // healthcare worker and application-restricted tokens: redacted
    for role in ["healthcare-worker", "application-restricted"] {
        let r = server.api_as(role).get_patient(RESTRICTED).await;
        assert_eq!(r.status, 200);
        assert!(
            r.body.get("address").is_none() && r.body.get("telecom").is_none(),
            "{role}: {}",
            r.body
        );
    }
}

#[tokio::test]
async fn application_restricted_cannot_patch() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let r = server
        .api_as("application-restricted")
        .patch(
            FULL,
            1,
            json!({"patches": [{"op": "replace", "path": "/gender", "value": "male"}]}),
        )
        .await;
    r.expect(403, "INVALID_METHOD").expect_diagnostics(
        "Your app has insufficient permissions to use this method. Please contact support.",
    );
    assert_eq!(
        r.body["issue"][0]["details"]["coding"][0]["display"],
        "Cannot update resource with application-restricted access token"
    );
    assert_eq!(server.api().get_patient(FULL).await.version(), 1);
}

#[tokio::test]
async fn bad_tokens_are_refused_even_in_sandbox_mode() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let rid = request_id();
    let path = format!("/Patient/{FULL}");
    for (header, diagnostics) in [
        ("", "Empty Authorization header"),
        ("Bearer", "Missing access token"),
        ("Bearer abc.def.ghi", "Invalid Access Token"),
        ("Basic dXNlcjpwYXNz", "Invalid Access Token"),
    ] {
        let r = api
            .send(
                "GET",
                &path,
                &[("X-Request-ID", &rid), ("Authorization", header)],
                None,
            )
            .await;
        r.expect(401, "ACCESS_DENIED")
            .expect_diagnostics(diagnostics);
        assert_eq!(
            r.body["issue"][0]["details"]["coding"][0]["display"],
            "Access Denied - Unauthorised"
        );
    }
    // a token from another database's sandbox key is not valid here
    let other = tempfile::tempdir().unwrap();
    Server::demo(&other).stop();
    let foreign = mint(&other.path().join("pds.redb"), "back-office", &[]);
    let r = api
        .send(
            "GET",
            &path,
            &[
                ("X-Request-ID", &rid),
                ("Authorization", &format!("Bearer {foreign}")),
            ],
            None,
        )
        .await;
    r.expect(401, "ACCESS_DENIED");
}

#[tokio::test]
async fn sandbox_mode_refuses_non_loopback_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--db"])
        .arg(dir.path().join("pds.redb"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sandbox mode"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn secured_mode_requires_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "a-shared-secret-of-at-least-32-bytes!!").unwrap();
    let secret_flag = format!("--jwt-hs256-secret-file={}", secret.display());
    let server = Server::start(&dir.path().join("pds.redb"), &["--demo", &secret_flag]);
    let api = server.api();
    api.get_patient(FULL)
        .await
        .expect(401, "ACCESS_DENIED")
        .expect_diagnostics("Missing Authorization header");
    let token = mint(&server.db, "healthcare-worker", &[&secret_flag]);
    let api = Api {
        token: Some(token),
        ..server.api()
    };
    assert_eq!(api.get_patient(FULL).await.status, 200);
    // no sandbox key was created
    assert!(!Path::new(&format!("{}.jwt-dev-key", server.db.display())).exists());
}

#[tokio::test]
async fn tokens_are_held_to_their_claims() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "another-shared-secret-of-32-bytes-or-more";
    let server = Server::start(
        &dir.path().join("pds.redb"),
        &[
            "--demo",
            "--jwt-hs256-secret",
            secret,
            "--jwt-audience",
            "pds-test",
            "--jwt-max-ttl",
            "8h",
        ],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let hcw = "urn:nhsd:apim:user-nhs-cis2:aal3:personal-demographics-service";
    let status = |claims: serde_json::Value| {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        let api = Api {
            token: Some(token),
            ..server.api()
        };
        async move { api.get_patient(FULL).await.status }
    };
    assert_eq!(
        status(json!({"sub": "dr", "scope": hcw, "exp": now + 60, "aud": "pds-test"})).await,
        200
    );
    for (bad, why) in [
        (
            json!({"sub": "dr", "scope": hcw, "exp": now + 60}),
            "no aud",
        ),
        (
            json!({"sub": "dr", "scope": hcw, "exp": now + 60, "aud": "other"}),
            "another aud",
        ),
        (
            json!({"sub": "", "scope": hcw, "exp": now + 60, "aud": "pds-test"}),
            "empty sub",
        ),
        (
            json!({"sub": "dr", "scope": hcw, "exp": now as f64 + 60.5, "aud": "pds-test"}),
            "fractional exp",
        ),
        (
            json!({"sub": "dr", "scope": hcw, "exp": format!("{}", now + 60), "aud": "pds-test"}),
            "string exp",
        ),
        (
            json!({"sub": "dr", "scope": hcw, "exp": now + 9 * 3600, "aud": "pds-test"}),
            "beyond --jwt-max-ttl",
        ),
    ] {
        assert_eq!(status(bad).await, 401, "{why}");
    }
    // scopes are separated by single spaces: a tab joins two into one unknown scope
    let joined = format!("openid\t{hcw}");
    assert_eq!(
        status(json!({"sub": "dr", "scope": joined, "exp": now + 60, "aud": "pds-test"})).await,
        403
    );
    assert_eq!(
        status(json!({"sub": "dr", "scope": format!("openid {hcw}"), "exp": now + 60, "aud": "pds-test"})).await,
        200
    );
}

fn openssl(args: &[&str], dir: &Path) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .status()
        .expect("openssl")
        .success();
    assert!(ok, "openssl {args:?}");
}

#[tokio::test]
async fn rs256_and_es256_keys_and_no_algorithm_confusion() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(&["genrsa", "-out", "rsa.pem", "2048"], d);
    openssl(&["rsa", "-in", "rsa.pem", "-pubout", "-out", "rsa.pub"], d);
    openssl(
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ec.key",
        ],
        d,
    );
    openssl(
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "ec.key", "-out", "ec.pem",
        ],
        d,
    );
    openssl(&["ec", "-in", "ec.key", "-pubout", "-out", "ec.pub"], d);
    let rsa_flag = format!("--jwt-public-key=rsa1={}", d.join("rsa.pub").display());
    let ec_flag = format!("--jwt-public-key=ec1={}", d.join("ec.pub").display());
    let server = Server::start(&d.join("pds.redb"), &["--demo", &rsa_flag, &ec_flag]);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims =
        json!({"sub": "idp-user", "scope": "urn:pds-facade:back-office", "exp": now + 300});
    let sign = |alg: Algorithm, kid: &str, key: &EncodingKey| {
        let mut h = Header::new(alg);
        h.kid = Some(kid.into());
        encode(&h, &claims, key).unwrap()
    };
    let rsa_key = EncodingKey::from_rsa_pem(&std::fs::read(d.join("rsa.pem")).unwrap()).unwrap();
    let ec_key = EncodingKey::from_ec_pem(&std::fs::read(d.join("ec.pem")).unwrap()).unwrap();
    let get = |token: String| {
        let api = Api {
            token: Some(token),
            ..server.api()
        };
        async move { api.get_patient(RESTRICTED).await }
    };
    let r = get(sign(Algorithm::RS256, "rsa1", &rsa_key)).await;
    assert_eq!(
        (r.status, r.body["address"][0]["postalCode"].as_str()),
        (200, Some("TR1 2HE"))
    );
    assert_eq!(
        get(sign(Algorithm::ES256, "ec1", &ec_key)).await.status,
        200
    );
    // a key used under another kid's name, or HS256 signed with the RSA public key as secret
    get(sign(Algorithm::ES256, "rsa1", &ec_key))
        .await
        .expect(401, "ACCESS_DENIED");
    let confused = EncodingKey::from_secret(&std::fs::read(d.join("rsa.pub")).unwrap());
    get(sign(Algorithm::HS256, "rsa1", &confused))
        .await
        .expect(401, "ACCESS_DENIED");
    // no request without a token: keys are configured
    server
        .api()
        .get_patient(FULL)
        .await
        .expect(401, "ACCESS_DENIED");
}

/// The case-work roles read patients as a healthcare worker does (restricted records redacted)
/// and change none through the PDS routes: a correction is the NBO's, asked for as a case.
#[tokio::test]
async fn practice_and_pcse_read_like_a_healthcare_worker_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let hcw = server.api_as("healthcare-worker");
    for api in [server.api_as_practice("Y12345"), server.api_as("pcse")] {
        for id in [FULL, RESTRICTED] {
            let (mine, theirs) = (api.get_patient(id).await, hcw.get_patient(id).await);
            assert_eq!(mine.status, 200);
            assert_eq!(
                mine.body, theirs.body,
                "{id} as a healthcare worker sees it"
            );
        }
        let version = api.get_patient(FULL).await.version();
        let refused = api
            .patch(
                FULL,
                version,
                json!({"patches": [{"op": "replace", "path": "/gender", "value": "other"}]}),
            )
            .await;
        refused.expect(403, "ACCESS_DENIED");
        assert!(refused
            .diagnostics()
            .unwrap()
            .contains("does not change them"));
        assert_eq!(
            api.get_patient(FULL).await.version(),
            version,
            "nothing written"
        );
    }
    // a practice token must name its practice
    let out = std::process::Command::new(BIN)
        .args(["token", "--role", "practice"])
        .args(store_of(&dir.path().join("pds.redb")))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ods"));
}
