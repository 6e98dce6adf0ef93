//! `/metrics` in Prometheus text format, on a listener of its own (`--metrics-listen`), never
//! on the API's: what [`crate::telemetry`] records, rendered by `metrics-exporter-prometheus`.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::telemetry;

/// Latency buckets, in seconds: sub-millisecond reads to the 10 s request timeout.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Group sizes, up to the writer's largest group (256).
const CHANGES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Installs the process-wide recorder (once) and records the build.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets(SECONDS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(telemetry::GROUP_COMMIT_SIZE.into()), CHANGES)
        })
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    telemetry::describe();
    telemetry::build_info();
    Ok(handle)
}

/// Serves `GET /metrics` on `listener` until the process ends, and keeps the histograms
/// trimmed (the exporter's upkeep) meanwhile.
pub async fn serve(listener: tokio::net::TcpListener, handle: PrometheusHandle) {
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
                    .into_response()
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the metrics listener stopped");
    }
}
