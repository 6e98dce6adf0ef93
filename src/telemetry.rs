//! The service's metrics, recorded through the [`metrics`] facade by whichever layer sees the
//! event (requests in `http`, commits in `store`, storage errors in `app`) and exported in
//! Prometheus text format by [`crate::http::metrics`] when `--metrics-listen` is given (without
//! it no recorder is installed and recording costs next to nothing).
//!
//! No label ever carries personal data: routes are matched templates (`/Patient/{id}`), never
//! paths; there are no query strings, NHS numbers, names or token subjects.

use std::time::Duration;

/// Requests answered, by `route` template, `method` and `status`.
pub const REQUESTS: &str = "pds_http_requests_total";
/// Time to answer a request, by `route`, `method` and `status`.
pub const REQUEST_SECONDS: &str = "pds_http_request_duration_seconds";
/// Changes per durable commit of the embedded store's writer (group commit).
pub const GROUP_COMMIT_SIZE: &str = "pds_store_group_commit_size";
/// Time a durable commit takes, by `store` (`redb`: one group; `postgres`: one change).
pub const COMMIT_SECONDS: &str = "pds_store_commit_seconds";
/// Storage errors answered to callers, by `kind` (unavailable, internal, corrupt,
/// range_exhausted).
pub const STORE_ERRORS: &str = "pds_store_errors_total";
/// Requests refused 429 by the per-client rate limit.
pub const RATE_LIMITED: &str = "pds_rate_limit_refusals_total";
/// Always 1, labelled with the running `version`.
pub const BUILD_INFO: &str = "pds_build_info";

/// HTTP methods as labelled: the standard ones, anything else `other` (a client must not be
/// able to make up label values).
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// One answered request; `route` must be a route template (or a fixed placeholder).
pub fn request(route: &str, method: &str, status: u16, elapsed: Duration) {
    let labels = [
        ("route", route.to_string()),
        ("method", method_label(method).to_string()),
        ("status", status.to_string()),
    ];
    metrics::counter!(REQUESTS, &labels).increment(1);
    metrics::histogram!(REQUEST_SECONDS, &labels).record(elapsed.as_secs_f64());
}

/// One durable commit of `changes` changes by the embedded store's writer.
pub fn group_commit(changes: usize, elapsed: Duration) {
    metrics::histogram!(GROUP_COMMIT_SIZE).record(changes as f64);
    metrics::histogram!(COMMIT_SECONDS, "store" => "redb").record(elapsed.as_secs_f64());
}

/// One commit of a change in PostgreSQL.
pub fn postgres_commit(elapsed: Duration) {
    metrics::histogram!(COMMIT_SECONDS, "store" => "postgres").record(elapsed.as_secs_f64());
}

/// A storage error that reached a caller.
pub fn store_error(kind: &'static str) {
    metrics::counter!(STORE_ERRORS, "kind" => kind).increment(1);
}

/// A request refused by the rate limit.
pub fn rate_limited() {
    metrics::counter!(RATE_LIMITED).increment(1);
}

/// The running build.
pub fn build_info() {
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// Says what each metric is (Prometheus `# HELP` lines).
pub fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        "Requests answered, by route template, method and status"
    );
    metrics::describe_histogram!(
        REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "Time to answer a request, by route template, method and status"
    );
    metrics::describe_histogram!(
        GROUP_COMMIT_SIZE,
        "Changes per durable commit of the embedded store's writer (group commit)"
    );
    metrics::describe_histogram!(
        COMMIT_SECONDS,
        metrics::Unit::Seconds,
        "Time a durable commit takes (redb: one group of changes; postgres: one change)"
    );
    metrics::describe_counter!(STORE_ERRORS, "Storage errors answered to callers, by kind");
    metrics::describe_counter!(
        RATE_LIMITED,
        "Requests refused 429 by the per-client rate limit"
    );
    metrics::describe_gauge!(BUILD_INFO, "The running pds-facade build (always 1)");
}
