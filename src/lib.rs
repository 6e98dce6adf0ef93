//! pds-facade: NHS PDS-compatible FHIR R4 Patient service over an embedded redb store or
//! PostgreSQL.
//!
//! Layers, each depending only on the ones below it:
//! * [`http`] — axum handlers, headers, status codes, OperationOutcome rendering;
//! * [`app`] — the use cases (read, search, update, merge, create, change identity…), once each;
//! * [`domain`] — the patch layer: NHS numbers, the Patient document, PATCH and business rules;
//! * [`store`] — the [`store::PatientStore`] trait, its redb and PostgreSQL implementations.
//!
//! [`telemetry`] names the metrics every layer records (no personal data in any label).

pub mod app;
pub mod auth;
pub mod demo;
pub mod domain;
pub mod env;
pub mod generate;
pub mod http;
pub mod import;
pub mod progress;
pub mod store;
pub mod telemetry;
pub mod transfer;
