//! The case-work console over plain HTTP (no browser): sign-in and its cookie, the checks on
//! every form post (CSRF token, origin), a form sent twice is one change, the security
//! headers, and what each role's pages show — never a restricted record's hidden fields, never
//! another practice's case. The journeys themselves run in Chromium (`browser.rs`).

use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::Value;

use crate::helpers::*;

/// A browser-like client of the console: the session cookie it was given, no redirects
/// followed (the tests look at them).
struct Console {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

struct Page {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The value of the first hidden input `name` on the page.
    fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} on the page: {}", self.body))
            + marker.len();
        self.body[start..].split('"').next().unwrap().to_string()
    }
}

impl Console {
    fn new(server: &Server) -> Console {
        Console {
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            base: server.base.clone(),
            cookie: None,
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        form: Option<&[(&str, &str)]>,
        extra: &[(&str, &str)],
    ) -> Page {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, c);
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        if let Some(f) = form {
            let body: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(f.iter())
                .finish();
            req = req
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body);
        }
        let r = req.send().await.unwrap();
        Page {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Page {
        self.send("GET", path, None, &[]).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send("POST", path, Some(form), &[]).await
    }

    /// Signs in through the sandbox form; returns the Set-Cookie header it got.
    async fn sign_in(&mut self, role: &str, ods: &str) -> String {
        let r = self
            .post("/console/sign-in", &[("role", role), ("ods", ods)])
            .await;
        assert_eq!((r.status, r.location()), (303, "/console/"), "{}", r.body);
        let set = r.headers[SET_COOKIE].to_str().unwrap().to_string();
        self.cookie = Some(set.split(';').next().unwrap().to_string());
        set
    }
}

async fn task_total(server: &Server) -> u64 {
    server.api_as("pcse").get("/Task?_count=500").await.body["total"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn sign_in_gives_a_strict_cookie_and_every_form_needs_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let mut c = Console::new(&server);

    let r = c.get("/console/").await;
    assert_eq!((r.status, r.location()), (303, "/console/sign-in"));
    let r = c.get("/console/sign-in").await;
    assert_eq!(r.status, 200);
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(r.headers["x-frame-options"], "DENY");
    assert!(!r.body.contains("<script>"), "no inline script");

    // a post from another site is refused, and so is a practice without a good ODS code
    let r = c
        .send(
            "POST",
            "/console/sign-in",
            Some(&[("role", "pcse")]),
            &[("Origin", "http://evil.example")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.headers.get(SET_COOKIE).is_none());
    let r = c
        .post(
            "/console/sign-in",
            &[("role", "practice"), ("ods", "not an ods code")],
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .post("/console/sign-in", &[("role", "healthcare-worker")])
        .await;
    assert_eq!(r.status, 400, "the console is for case work");

    let set = c.sign_in("practice", "Y12345").await;
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP on loopback");
    let behind_tls = c
        .send(
            "POST",
            "/console/sign-in",
            Some(&[("role", "pcse")]),
            &[("X-Forwarded-Proto", "https")],
        )
        .await;
    assert!(behind_tls.headers[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("; Secure"));

    let form = c
        .get("/console/cases/new?kind=incorrect-demographics")
        .await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("GP practice Y12345"));
    let (csrf, rid) = (form.hidden("csrf"), form.hidden("request_id"));
    let fields = |csrf: &'static str| {
        vec![
            ("kind", "incorrect-demographics"),
            ("patient", FULL),
            ("description", "Wrong birth date"),
            ("csrf", csrf),
        ]
    };
    let before = task_total(&server).await;
    // no token, a wrong token, another origin: refused, nothing stored
    for (form, extra) in [
        (fields(""), vec![]),
        (fields("0000"), vec![]),
        (
            vec![
                ("kind", "incorrect-demographics"),
                ("patient", FULL),
                ("description", "x"),
                ("csrf", csrf.as_str()),
            ],
            vec![("Sec-Fetch-Site", "cross-site")],
        ),
    ] {
        let r = c.send("POST", "/console/cases", Some(&form), &extra).await;
        assert_eq!(r.status, 403, "{}", r.body);
    }
    assert_eq!(task_total(&server).await, before);

    // the same form sent twice (a double click, a reload) is one case
    let good = [
        ("kind", "incorrect-demographics"),
        ("patient", FULL),
        ("description", "Wrong birth date"),
        ("csrf", csrf.as_str()),
        ("request_id", rid.as_str()),
    ];
    let first = c.post("/console/cases", &good).await;
    let again = c.post("/console/cases", &good).await;
    assert_eq!(first.status, 303, "{}", first.body);
    assert_eq!(first.location(), again.location());
    assert_eq!(task_total(&server).await, before + 1);
    let page = c.get(first.location()).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Wrong birth date"));

    // a bad NHS number is refused with the reason, on the form again, nothing stored
    let bad = [
        ("kind", "incorrect-demographics"),
        ("patient", "9991000004"),
        ("description", "x"),
        ("csrf", csrf.as_str()),
    ];
    let r = c.post("/console/cases", &bad).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("role=\"alert\""), "{}", r.body);
    assert!(
        r.body.contains(">x</textarea>"),
        "what was typed is kept: {}",
        r.body
    );
    assert_eq!(task_total(&server).await, before + 1);

    // signed out: the cookie is cleared and the pages ask to sign in again
    let out = c
        .post("/console/sign-out", &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(out.status, 303);
    assert!(out.headers[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
}

#[tokio::test]
async fn pages_show_a_role_only_what_it_may_see() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let bo = server.api_as("back-office");
    let hidden = bo.get_patient(RESTRICTED).await.body;
    let hidden_gp = hidden["generalPractitioner"][0]["identifier"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let postcode = hidden["address"][0]["postalCode"]
        .as_str()
        .unwrap()
        .to_string();

    let mut practice = Console::new(&server);
    practice.sign_in("practice", "Y12345").await;
    let form = practice.get("/console/cases/new?kind=sensitive-flag").await;
    let csrf = form.hidden("csrf");
    let r = practice
        .post(
            "/console/cases",
            &[
                ("kind", "sensitive-flag"),
                ("patient", RESTRICTED),
                ("description", "Protect the address"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let case = r.location().to_string();

    // the lookup as a number is typed, and the pages PCSE and the practice see: nothing hidden
    let lookup = practice
        .get(&format!("/console/lookup?nhs={RESTRICTED}"))
        .await;
    let found: Value = serde_json::from_str(&lookup.body).unwrap();
    assert_eq!(found["ok"], true);
    let mut pcse = Console::new(&server);
    pcse.sign_in("pcse", "").await;
    for page in [
        lookup,
        practice.get(&case).await,
        practice.get("/console/").await,
        pcse.get(&case).await,
        pcse.get("/console/").await,
        pcse.get(&format!("/console/lookup?nhs={RESTRICTED}")).await,
    ] {
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(!page.body.contains(&hidden_gp), "GP shown: {}", page.body);
        assert!(
            !page.body.contains(&postcode),
            "address shown: {}",
            page.body
        );
    }
    // its own practice does not reach the case through the hidden GP
    let mut its_practice = Console::new(&server);
    its_practice.sign_in("practice", &hidden_gp).await;
    assert_eq!(its_practice.get(&case).await.status, 404);
    assert!(!its_practice
        .get("/console/")
        .await
        .body
        .contains(case.trim_start_matches("/console/cases/")));

    // another practice: not its case, not its messages
    let mut other = Console::new(&server);
    other.sign_in("practice", "Y99999").await;
    assert_eq!(other.get(&case).await.status, 404);
    assert_eq!(other.get("/console/cases/demo-case-1").await.status, 404);
    // the NBO sees the whole record (it is the back office)
    let mut nbo = Console::new(&server);
    nbo.sign_in("back-office", "").await;
    let page = nbo.get(&case).await;
    assert!(page.body.contains(&postcode));
    // a practice sees no correction forms, PCSE no completion
    assert!(!practice
        .get("/console/cases/demo-case-1")
        .await
        .body
        .contains("Preview the merge"));
    let pcse_view = pcse.get("/console/cases/demo-case-1").await.body;
    assert!(!pcse_view.contains("Complete the case") && !pcse_view.contains("Preview the merge"));
    assert!(nbo
        .get("/console/cases/demo-case-1")
        .await
        .body
        .contains("Preview the merge"));
}

#[tokio::test]
async fn secured_mode_signs_in_with_a_pasted_token() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "a-shared-secret-of-at-least-32-bytes!!").unwrap();
    let flag = format!("--jwt-hs256-secret-file={}", secret.display());
    let server = Server::start(&dir.path().join("pds.redb"), &["--demo", &flag]);
    let mut c = Console::new(&server);
    let page = c.get("/console/sign-in").await;
    assert!(page.body.contains("Bearer token") && !page.body.contains("name=\"role\""));
    // picking a role is not a way in outside sandbox mode
    let r = c.post("/console/sign-in", &[("role", "back-office")]).await;
    assert_eq!(r.status, 400);
    let r = c
        .post("/console/sign-in", &[("token", "not.a.token")])
        .await;
    assert_eq!(r.status, 400);
    let hcw = mint(&server.db, "healthcare-worker", &[&flag]);
    assert_eq!(
        c.post("/console/sign-in", &[("token", &hcw)]).await.status,
        400
    );
    let token = mint(&server.db, "pcse", &[&flag]);
    let r = c.post("/console/sign-in", &[("token", &token)]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    c.cookie = Some(
        r.headers[SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string(),
    );
    let inbox = c.get("/console/").await;
    assert_eq!(inbox.status, 200);
    assert!(inbox.body.contains("Inbox"));
}

/// The NBO's correction forms do what they say, through PDS's rules, recorded on the case.
#[tokio::test]
async fn the_nbo_corrects_a_record_through_its_forms() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let (bo, pcse) = (server.api_as("back-office"), server.api_as("pcse"));
    let p = pds_facade::demo::nhs_numbers()[28].to_string();
    let body = serde_json::json!({"resourceType": "Task",
        "code": {"coding": [{"system": "urn:pds-facade:fhir:CodeSystem:case-kind", "code": "incorrect-demographics"}]},
        "for": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": p}},
        "description": "Wrong family name and practice"});
    let r = server
        .api_as_practice("Y12345")
        .post_with("/Task", &body, &request_id())
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    for (v, to) in [(1, "received"), (2, "accepted")] {
        let ops =
            serde_json::json!([{"op": "replace", "path": "/status", "value": to}]).to_string();
        let m = format!("W/\"{v}\"");
        let rid = request_id();
        let r = pcse
            .send(
                "PATCH",
                &format!("/Task/{id}"),
                &[
                    ("X-Request-ID", &rid),
                    ("If-Match", &m),
                    ("Content-Type", "application/json-patch+json"),
                ],
                Some(ops),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let mut nbo = Console::new(&server);
    nbo.sign_in("back-office", "").await;
    let page = nbo.get(&format!("/console/cases/{id}")).await;
    let csrf = page.hidden("csrf");
    let path = |what: &str| format!("/console/cases/{id}/correct/{what}");

    let r = nbo
        .post(
            &path("demographics"),
            &[
                ("csrf", &csrf),
                ("patient-demographics", &p),
                ("field", "family"),
                ("value", "Ashworth"),
                ("reason-demographics", "Deed poll seen"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let record = bo.get_patient(&p).await.body;
    assert_eq!(record["name"][0]["family"], "Ashworth", "{record}");
    let r = nbo
        .post(
            &path("gp"),
            &[
                ("csrf", &csrf),
                ("patient-gp", &p),
                ("ods", "Y22222"),
                ("reason-gp", "Registered elsewhere"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let record = bo.get_patient(&p).await.body;
    assert_eq!(record["generalPractitioner"].as_array().unwrap().len(), 1);
    assert_eq!(
        record["generalPractitioner"][0]["identifier"]["value"],
        "Y22222"
    );
    let task = bo.get(&format!("/Task/{id}")).await.body;
    let recorded = task["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"]["coding"][0]["code"] == "correction")
        .count();
    assert_eq!(recorded, 2, "{task}");

    // a reason is needed; a merge preview only for the case's own records
    let r = nbo
        .post(
            &path("gp"),
            &[("csrf", &csrf), ("patient-gp", &p), ("ods", "Y33333")],
        )
        .await;
    assert!(r.body.contains("role=\"alert\""), "{}", r.body);
    assert_eq!(
        bo.get_patient(&p).await.body["generalPractitioner"][0]["identifier"]["value"],
        "Y22222"
    );
    let r = nbo
        .post(
            &path("merge-preview"),
            &[
                ("csrf", &csrf),
                ("target", RESTRICTED),
                ("reason-merge", "x"),
            ],
        )
        .await;
    assert!(
        r.body.contains("role=\"alert\"") && !r.body.contains("Merge the records"),
        "{}",
        r.body
    );
    // a redirect never carries what the request made up
    let r = nbo
        .post(
            "/console/cases/a%0Ab/move",
            &[("csrf", &csrf), ("to", "received")],
        )
        .await;
    assert!(r.status < 500, "{}", r.status);
}
