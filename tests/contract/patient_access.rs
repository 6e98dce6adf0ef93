//! Patient access (NHS login, the `patient` role): a P9 patient reads and PATCHes only their
//! own record, within PDS's patient-access rules; everything else is PDS's 403.

use std::process::Command;

use serde_json::{json, Value};

use crate::helpers::*;

const DISPLAY: &str = "Patient cannot perform this action";
const DIAGNOSTICS: &str = "Your access token has insufficient permissions. See documentation regarding Patient access restrictions https://digital.nhs.uk/developer/api-catalogue/personal-demographics-service-fhir";
const NOT_PERMITTED: &str = "Invalid update with error - This user does not have permission to update the fields in the patches provided.";

/// PDS's patient-access refusal, to the letter.
fn refused(r: &Reply) {
    r.expect(403, "ACCESS_DENIED")
        .expect_diagnostics(DIAGNOSTICS);
    assert_eq!(r.body["issue"][0]["code"], "forbidden", "{}", r.body);
    assert_eq!(
        r.body["issue"][0]["details"]["coding"][0]["display"],
        DISPLAY
    );
}

fn ident(n: &str) -> Value {
    json!({"system": "https://fhir.nhs.uk/Id/nhs-number", "value": n})
}

#[tokio::test]
async fn a_patient_reads_their_own_record_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let me = server.api_as_patient(FULL, "P9.Cp.Cd");
    let own = me.get_patient(FULL).await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(own.body, server.api().get_patient(FULL).await.body);
    let contacts = me.get(&format!("/Patient/{FULL}/RelatedPerson")).await;
    assert_eq!(contacts.status, 200, "{}", contacts.body);
    // someone else's record, existing or not: the same 403, nothing of the record
    for other in [MINIMAL, RESTRICTED, UNKNOWN] {
        let r = me.get_patient(other).await;
        refused(&r);
        refused(&me.get(&format!("/Patient/{other}/RelatedPerson")).await);
    }
    // no search (not even for oneself), no history, no back-office or case routes
    for path in [
        "/Patient?family=Smith&birthdate=eq2010-10-22".to_string(),
        format!("/Patient?identifier={FULL}"),
        format!("/Patient/{FULL}/_history"),
        format!("/Patient/{FULL}/_history/1"),
        format!("/_audit?patient={FULL}"),
        "/Task".to_string(),
        "/Communication".to_string(),
    ] {
        let r = me.get(&path).await;
        refused(&r);
    }
    refused(
        &me.post_with(
            "/Patient",
            &new_patient("Ada", "Lovelace", "2010-10-22"),
            &request_id(),
        )
        .await,
    );
    refused(
        &me.operation(
            "$merge",
            json!([{"name": "source-patient-identifier", "valueIdentifier": ident(MINIMAL)},
                   {"name": "target-patient-identifier", "valueIdentifier": ident(FULL)},
                   {"name": "reason", "valueString": "duplicate"}]),
        )
        .await,
    );
    // NHSD-Session-URID means nothing to patient access (a patient has no role profile)
    let rid = request_id();
    let r = me
        .send(
            "GET",
            &format!("/Patient/{FULL}"),
            &[("X-Request-ID", &rid), ("NHSD-Session-URID", "not-a-urid")],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn a_restricted_patient_gets_the_restricted_view_of_their_own_record() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let me = server.api_as_patient(RESTRICTED, "P9.Cm");
    let own = me.get_patient(RESTRICTED).await;
    assert_eq!(own.status, 200, "{}", own.body);
    // exactly what a healthcare worker sees: no address, no telecom
    assert_eq!(own.body, server.api().get_patient(RESTRICTED).await.body);
    assert!(own.body.get("address").is_none() && own.body.get("telecom").is_none());
    let all = server.api_as("back-office").get_patient(RESTRICTED).await;
    let hidden = all.body["address"][0]["postalCode"].as_str().unwrap();
    assert!(!shown(&own).contains(hidden));
    let contacts = me
        .get(&format!("/Patient/{RESTRICTED}/RelatedPerson"))
        .await;
    assert_eq!(contacts.body["total"], 0, "{}", contacts.body);
    // and may not change it, as a healthcare worker may not; the refusal echoes nothing hidden
    let r = me
        .patch_current(
            RESTRICTED,
            json!([{"op": "add", "path": "/telecom/-",
                    "value": {"system": "phone", "use": "mobile", "value": "07700900999"}}]),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!shown(&r).contains(hidden));
    assert_eq!(
        server
            .api_as("back-office")
            .get_patient(RESTRICTED)
            .await
            .body,
        all.body
    );
}

#[tokio::test]
async fn a_patient_patches_only_what_patient_access_may() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let me = server.api_as_patient(FULL, "P9.Cp.Ck");
    let v = me.get_patient(FULL).await.version();
    let r = me
        .patch(
            FULL,
            v,
            json!({"patches": [{"op": "add", "path": "/telecom/-",
                "value": {"system": "phone", "use": "mobile", "value": "07700900777"}}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.version(), v + 1);
    assert!(r.body["telecom"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["value"] == "07700900777" && t["use"] == "mobile"));
    // the audit trail names the patient role
    let audit = server
        .api_as("back-office")
        .get(&format!("/_audit?patient={FULL}"))
        .await;
    assert!(
        audit.body.to_string().contains("\"patient\""),
        "{}",
        audit.body
    );
    // fields outside the patient-access table: PDS's 400
    for patches in [
        json!([{"op": "replace", "path": "/gender", "value": "male"}]),
        json!([{"op": "replace", "path": "/birthDate", "value": "2001-01-01"}]),
    ] {
        let r = me.patch(FULL, v + 1, json!({ "patches": patches })).await;
        r.expect(400, "INVALID_UPDATE")
            .expect_diagnostics(NOT_PERMITTED);
    }
    assert_eq!(me.get_patient(FULL).await.version(), v + 1);
    // someone else's record: 403 before anything is read
    refused(
        &me.patch(
            MINIMAL,
            1,
            json!({"patches": [{"op": "replace", "path": "/gender", "value": "male"}]}),
        )
        .await,
    );
    assert_eq!(server.api().get_patient(MINIMAL).await.version(), 1);
}

#[tokio::test]
async fn below_p9_a_patient_may_do_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    for vot in ["P5.Cm", "P5.Cp.Cd", "P0.Cm"] {
        let low = server.api_as_patient(FULL, vot);
        refused(&low.get_patient(FULL).await);
        refused(&low.get(&format!("/Patient/{FULL}/RelatedPerson")).await);
        refused(
            &low.patch(
                FULL,
                1,
                json!({"patches": [{"op": "add", "path": "/telecom/-",
                    "value": {"system": "email", "value": "me@example.com"}}]}),
            )
            .await,
        );
    }
    assert_eq!(server.api().get_patient(FULL).await.version(), 1);
}

#[tokio::test]
async fn a_superseded_own_number_follows_the_merge() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let bo = server.api_as("back-office");
    let merged = bo
        .operation(
            "$merge",
            json!([{"name": "source-patient-identifier", "valueIdentifier": ident(COMPOUND_GIVEN)},
                   {"name": "target-patient-identifier", "valueIdentifier": ident(SEVERAL_TELECOMS)},
                   {"name": "reason", "valueString": "duplicate"}]),
        )
        .await;
    assert_eq!(merged.status, 200, "{}", merged.body);
    // the token's (old) number shows the survivor, as for everyone; the survivor is theirs too
    let me = server.api_as_patient(COMPOUND_GIVEN, "P9.Cp.Cd");
    let old = me.get_patient(COMPOUND_GIVEN).await;
    assert_eq!(old.status, 200, "{}", old.body);
    assert_eq!(old.body["id"], SEVERAL_TELECOMS);
    assert_eq!(me.get_patient(SEVERAL_TELECOMS).await.status, 200);
    // the survivor's patient reaches only the survivor's number
    let survivor = server.api_as_patient(SEVERAL_TELECOMS, "P9.Cp.Cd");
    assert_eq!(survivor.get_patient(SEVERAL_TELECOMS).await.status, 200);
    refused(&survivor.get_patient(COMPOUND_GIVEN).await);
}

#[tokio::test]
async fn patient_tokens_name_a_valid_nhs_number() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "a-patient-access-secret-of-32-bytes-or-more";
    let server = Server::start(
        &dir.path().join("pds.redb"),
        &["--demo", "--jwt-hs256-secret", secret],
    );
    // the CLI mints none without a valid one, nor one for another role
    for extra in [
        vec!["--role", "patient"],
        vec!["--role", "patient", "--nhs-number", "9991000004"],
        vec!["--role", "patient", "--nhs-number", FULL, "--vot", "Q9"],
        vec!["--role", "healthcare-worker", "--nhs-number", FULL],
        vec!["--role", "healthcare-worker", "--vot", "P9.Cm"],
    ] {
        let out = Command::new(BIN)
            .arg("token")
            .args(&extra)
            .args(["--jwt-hs256-secret", secret])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra:?}");
    }
    let minted = mint(
        &server.db,
        "patient",
        &["--nhs-number", FULL, "--jwt-hs256-secret", secret],
    );
    let api = Api {
        token: Some(minted),
        ..server.api()
    };
    assert_eq!(
        api.get_patient(FULL).await.status,
        200,
        "--vot defaults to P9.Cp.Cd"
    );
    // a token without a (valid) NHS number is not valid: 401
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for nhs in [json!(null), json!("9991000004"), json!("not a number")] {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"sub": "nhs-login-user", "exp": now + 60, "nhs_number": nhs, "vot": "P9.Cp.Cd",
                "scope": "openid urn:nhsd:apim:user-nhs-login:P9:personal-demographics-service"}),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        let api = Api {
            token: Some(token),
            ..server.api()
        };
        api.get_patient(FULL)
            .await
            .expect(401, "ACCESS_DENIED")
            .expect_diagnostics("Invalid Access Token");
    }
}
