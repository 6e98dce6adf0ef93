//! The patch layer: PDS domain values and rules. Pure — no I/O, no clocks, no randomness; the
//! caller passes today's date and an id generator in.

pub mod case;
pub mod confidentiality;
pub mod create_request;
pub mod export;
pub mod identity;
pub mod index;
pub mod json;
pub mod merge;
pub mod nhs_number;
pub mod operation;
pub mod outcome;
pub mod parameters;
pub mod patch;
pub mod patient;
pub mod patient_access;
pub mod query;
pub mod related_person;
pub mod role;
pub mod rules;
pub mod schema;
pub mod search;
pub mod subset;
pub mod version;
pub mod view;

pub use nhs_number::NhsNumber;
pub use outcome::{ErrorCode, PdsError};
pub use patch::{PatchContext, PatchRequest};
pub use patient::Patient;
pub use role::Role;
pub use schema::Schemas;
pub use version::Version;
