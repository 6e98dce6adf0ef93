//! Black-box contract tests: the real binary on a random port, driven over HTTP.

mod helpers;

mod auth;
mod backoffice;
mod browser;
mod case_store;
mod cases;
mod cli;
mod clients;
mod console;
mod crash;
mod export;
mod faults;
mod fhir;
mod get;
mod identity;
mod metrics;
mod patch;
mod patient_access;
mod postgres;
mod restricted;
mod robustness;
mod search;
mod service;
mod transfer;
