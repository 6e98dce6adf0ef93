//! The HTTP ceiling for `bench/run`: a bare axum route that answers `GET /Patient/{id}` with the
//! bytes and headers pds-facade sends for a record, from memory — no storage, no checks, no
//! middleware, same runtime and HTTP stack. pds-facade's GET throughput is reported as a share
//! of this one's on the same machine in the same run.
//!
//! `cargo run --release --example ceiling -- BODY_FILE` prints `listening on http://ADDR`.

use axum::body::Bytes;
use axum::http::header;
use axum::routing::get;
use axum::Router;

#[tokio::main]
async fn main() {
    let file = std::env::args()
        .nth(1)
        .expect("usage: ceiling BODY_FILE (the bytes to answer with)");
    let body = Bytes::from(std::fs::read(&file).expect("read the body file"));
    let app = Router::new().route(
        "/Patient/{id}",
        get(move || {
            let body = body.clone();
            async move {
                (
                    [
                        (header::CONTENT_TYPE, "application/fhir+json"),
                        (header::ETAG, "W/\"1\""),
                    ],
                    body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    println!(
        "listening on http://{}",
        listener.local_addr().expect("address")
    );
    axum::serve(listener, app).await.expect("serve");
}
