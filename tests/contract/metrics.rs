//! `/metrics`: Prometheus text on the `--metrics-listen` address only, with the series an
//! operator watches, and no personal data in any of them.

use serde_json::json;

use crate::helpers::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of the series written exactly as `series` (name and labels), if scraped.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_are_served_on_their_own_address_without_personal_data() {
    let dir = tempfile::tempdir().unwrap();
    let at = format!("127.0.0.1:{}", free_port());
    let server = Server::start(
        &dir.path().join("pds.redb"),
        &["--demo", "--rate-limit", "10", "--metrics-listen", &at],
    );
    let api = server.api();
    assert_eq!(api.get_patient(FULL).await.status, 200);
    let r = api
        .patch(
            FULL,
            1,
            json!({"patches": [{"op": "replace", "path": "/gender", "value": "unknown"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let found = api
        .get("/Patient?family=Smith&gender=female&birthdate=eq2010-10-22")
        .await;
    assert_eq!(found.status, 200, "{}", found.body);
    api.get_patient(UNKNOWN)
        .await
        .expect(404, "RESOURCE_NOT_FOUND");
    // the API's own listener does not serve them
    api.get("/metrics").await.expect(400, "UNSUPPORTED_REQUEST");
    // a burst beyond the rate limit
    let mut refused = 0;
    for _ in 0..30 {
        if api.get_patient(FULL).await.status == 429 {
            refused += 1;
        }
    }
    assert!(refused > 0, "the burst went over the limit");
    // a change that meets a full disk (embedded store): a storage error
    let store_failed = postgres().is_none();
    if store_failed {
        crate::faults::limit_file_size(&server, Some(0));
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let r = api
            .patch(
                FULL,
                2,
                json!({"patches": [{"op": "replace", "path": "/gender", "value": "male"}]}),
            )
            .await;
        assert_eq!(r.status, 503, "{}", r.body);
        crate::faults::limit_file_size(&server, None);
    }

    let scrape = reqwest::get(format!("http://{at}/metrics")).await.unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(scrape
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain; version=0.0.4")));
    let text = scrape.text().await.unwrap();
    // well-formed exposition lines: comments, or a series and a number
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, number) = line.rsplit_once(' ').unwrap_or_default();
        assert!(
            series.starts_with("pds_") && number.parse::<f64>().is_ok(),
            "not an exposition line: {line}"
        );
    }
    let read = r#"{route="/Patient/{id}",method="GET",status="200"}"#;
    assert!(
        value(&text, &format!("pds_http_requests_total{read}")) >= Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"pds_http_requests_total{route="/Patient/{id}",method="PATCH",status="200"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"pds_http_requests_total{route="/Patient",method="GET",status="200"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        value(
            &text,
            r#"pds_http_request_duration_seconds_bucket{route="/Patient/{id}",method="GET",status="200",le="+Inf"}"#
        ) >= Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"pds_http_requests_total{route="/Patient/{id}",method="GET",status="429"}"#
        ),
        Some(refused as f64),
        "{text}"
    );
    assert_eq!(
        value(&text, "pds_rate_limit_refusals_total"),
        Some(refused as f64),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            &format!(
                "pds_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0),
        "{text}"
    );
    if store_failed {
        assert!(
            value(&text, "pds_store_group_commit_size_count") >= Some(1.0),
            "{text}"
        );
        assert!(
            value(&text, r#"pds_store_commit_seconds_count{store="redb"}"#) >= Some(1.0),
            "{text}"
        );
        assert!(
            value(&text, r#"pds_store_errors_total{kind="unavailable"}"#) >= Some(1.0),
            "{text}"
        );
    } else {
        assert!(
            value(&text, r#"pds_store_commit_seconds_count{store="postgres"}"#) >= Some(1.0),
            "{text}"
        );
    }
    for personal in [FULL, UNKNOWN, "Smith", "family=", "2010-10-22"] {
        assert!(
            !text.contains(personal),
            "{personal} is in the metrics:\n{text}"
        );
    }
}
