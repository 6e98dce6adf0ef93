//! Loading FHIR Patient resources from files: a single Patient, a Bundle of Patients
//! (`entry[].resource`) or NDJSON (one Patient per line).
//!
//! Every record is validated as a stored record (schema + record rules). A file is loaded
//! whole or not at all: one bad record, or one existing NHS number without `--replace`,
//! rejects the file, and the report names each problem with its line or entry.

use std::fmt;
use std::path::Path;

use serde_json::Value;
use time::Date;

use crate::domain::patient::assign_missing_ids;
use crate::domain::{Patient, Schemas};
use crate::store::{ExistingRecords, PatientStore, StoreError};

/// Where in a file a record came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The file is one Patient.
    Whole,
    /// 1-based line of an NDJSON file.
    Line(usize),
    /// 0-based index of a Bundle entry.
    Entry(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Whole => f.write_str("resource"),
            Location::Line(n) => write!(f, "line {n}"),
            Location::Entry(n) => write!(f, "entry {n}"),
        }
    }
}

/// One problem that kept a file from loading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub location: Option<Location>,
    pub reason: String,
}

/// The result of importing one file.
#[derive(Debug)]
pub struct FileReport {
    pub file: String,
    pub loaded: usize,
    pub problems: Vec<Problem>,
}

/// Splits file contents into `(location, resource)` pairs.
pub fn read_records(text: &str) -> Result<Vec<(Location, Value)>, Problem> {
    let whole_file = |reason: String| Problem {
        location: None,
        reason,
    };
    match serde_json::from_str::<Value>(text) {
        Ok(doc) => match doc.get("resourceType").and_then(Value::as_str) {
            Some("Patient") => Ok(vec![(Location::Whole, doc)]),
            Some("Bundle") => {
                let entries = doc
                    .get("entry")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                entries
                    .into_iter()
                    .enumerate()
                    .map(|(i, e)| match e.get("resource") {
                        Some(r) => Ok((Location::Entry(i), r.clone())),
                        None => Err(Problem {
                            location: Some(Location::Entry(i)),
                            reason: "entry has no resource".into(),
                        }),
                    })
                    .collect()
            }
            other => Err(whole_file(format!(
                "expected a Patient, a Bundle of Patients or NDJSON, found resourceType {}",
                other.map_or("(none)".to_string(), |t| format!("'{t}'"))
            ))),
        },
        Err(whole_error) => {
            let lines: Vec<(usize, &str)> = text
                .lines()
                .enumerate()
                .map(|(i, l)| (i + 1, l.trim()))
                .filter(|(_, l)| !l.is_empty())
                .collect();
            if lines.len() < 2 {
                return Err(whole_file(format!("not valid JSON: {whole_error}")));
            }
            lines
                .into_iter()
                .map(|(n, line)| {
                    serde_json::from_str(line)
                        .map(|v| (Location::Line(n), v))
                        .map_err(|e| Problem {
                            location: Some(Location::Line(n)),
                            reason: format!("not valid JSON: {e}"),
                        })
                })
                .collect()
        }
    }
}

/// Validates the records of one file; every bad record is reported.
pub fn validate_records(
    records: Vec<(Location, Value)>,
    schemas: &Schemas,
    today: Date,
    new_id: &mut dyn FnMut() -> String,
) -> Result<Vec<Patient>, Vec<Problem>> {
    let mut good = Vec::with_capacity(records.len());
    let mut problems = Vec::new();
    for (location, mut doc) in records {
        if doc.get("resourceType").and_then(Value::as_str) != Some("Patient") {
            problems.push(Problem {
                location: Some(location),
                reason: "not a Patient resource".into(),
            });
            continue;
        }
        if let Value::Object(m) = &mut doc {
            if let Some(field) = ["link", "active"].into_iter().find(|f| m.contains_key(*f)) {
                problems.push(Problem {
                    location: Some(location),
                    reason: format!(
                        "'{field}' is merge state, which only $merge and $unmerge write"
                    ),
                });
                continue;
            }
            assign_missing_ids(m, new_id);
        }
        match Patient::parse(doc, schemas, today) {
            Ok(p) => good.push(p),
            Err(e) => problems.push(Problem {
                location: Some(location),
                reason: e.to_string(),
            }),
        }
    }
    if problems.is_empty() {
        Ok(good)
    } else {
        Err(problems)
    }
}

/// Imports one file into the store (one transaction).
pub fn import_file(
    store: &dyn PatientStore,
    schemas: &Schemas,
    path: &Path,
    existing: ExistingRecords,
    today: Date,
    new_id: &mut dyn FnMut() -> String,
) -> FileReport {
    let file = path.display().to_string();
    let fail = |problems: Vec<Problem>| FileReport {
        file: file.clone(),
        loaded: 0,
        problems,
    };
    let text = match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                return fail(vec![Problem {
                    location: None,
                    reason: "the file is not UTF-8".into(),
                }])
            }
        },
        Err(e) => {
            return fail(vec![Problem {
                location: None,
                reason: format!("cannot read: {e}"),
            }])
        }
    };
    let records = match read_records(&text) {
        Ok(r) => r,
        Err(p) => return fail(vec![p]),
    };
    let patients = match validate_records(records, schemas, today, new_id) {
        Ok(p) => p,
        Err(problems) => return fail(problems),
    };
    match store.insert_batch(&patients, existing) {
        Ok(()) => FileReport {
            file,
            loaded: patients.len(),
            problems: vec![],
        },
        Err(e @ (StoreError::AlreadyExists(_) | StoreError::DuplicateInBatch(_))) => {
            let hint = if matches!(e, StoreError::AlreadyExists(_)) {
                " (use --replace to overwrite)"
            } else {
                ""
            };
            fail(vec![Problem {
                location: None,
                reason: format!("{e}{hint}"),
            }])
        }
        Err(e) => fail(vec![Problem {
            location: None,
            reason: e.to_string(),
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_form() {
        let p = r#"{"resourceType":"Patient","id":"9000000009"}"#;
        assert_eq!(read_records(p).unwrap().len(), 1);
        let b = format!(
            r#"{{"resourceType":"Bundle","type":"collection","entry":[{{"resource":{p}}},{{"resource":{p}}}]}}"#
        );
        let r = read_records(&b).unwrap();
        assert_eq!(r[1].0, Location::Entry(1));
        let nd = format!("{p}\n\n{p}\n");
        let r = read_records(&nd).unwrap();
        assert_eq!(r[1].0, Location::Line(3));
        let bad = format!("{p}\n{{oops\n");
        assert_eq!(
            read_records(&bad).unwrap_err().location,
            Some(Location::Line(2))
        );
        assert!(read_records(r#"{"resourceType":"Observation"}"#).is_err());
    }

    #[test]
    fn merge_state_is_not_imported() {
        let doc = serde_json::json!({"resourceType": "Patient", "id": "9000000009", "active": false,
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}]});
        let mut id = || "X".to_string();
        let problems = validate_records(
            vec![(Location::Line(1), doc)],
            &Schemas::compile(),
            time::macros::date!(2026 - 11 - 27),
            &mut id,
        )
        .unwrap_err();
        assert!(problems[0].reason.contains("merge state"), "{problems:?}");
    }

    #[test]
    fn demo_patients_are_valid() {
        let schemas = Schemas::compile();
        let records = crate::demo::patients()
            .into_iter()
            .enumerate()
            .map(|(i, p)| (Location::Entry(i), p))
            .collect();
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("X{n}")
        };
        let patients = validate_records(
            records,
            &schemas,
            time::macros::date!(2026 - 11 - 27),
            &mut id,
        )
        .unwrap();
        assert_eq!(patients.len(), 34);
        assert!(patients[crate::demo::ids::RESTRICTED].is_restricted());
        let unique: std::collections::HashSet<_> = patients.iter().map(|p| p.id()).collect();
        assert_eq!(unique.len(), patients.len());
    }
}
