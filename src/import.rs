//! Loading FHIR Patient resources from files: a single Patient, a Bundle of Patients
//! (`entry[].resource`) or NDJSON (one Patient per line).
//!
//! Every record is validated as a stored record (schema + record rules). A file is loaded
//! whole or not at all: one bad record, or one existing NHS number without `--replace`,
//! rejects the file, and the report names each problem with its line or entry.

use std::fmt;
use std::io::BufRead;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use serde_json::Value;
use time::Date;

use crate::domain::patient::assign_missing_ids;
use crate::domain::{Patient, Schemas};
use crate::store::{BulkStep, ExistingRecords, PatientStore, Staged, StoreError};

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
    let now = crate::env::now();
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
            Ok(p) => good.push(p.stamped_unless_dated(&now)),
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

/// Records per write transaction in a bulk import, by default. Index entries are random with
/// respect to file order, so each batch rewrites the B-tree pages it touches: bigger batches
/// touch each page for more entries (1 M patients: 4,000 → 57 s, 16,000 → 32 s, 50,000 →
/// 30 s but twice the memory). About two batches of stored records are in memory at a time
/// (one being written, one gathering while it is; on redb a stored record is its compressed
/// form, about a third of the JSON).
pub const BATCH: usize = 20_000;
/// Lines of NDJSON a worker parses, validates and stages at a time, at most.
pub const CHUNK_RECORDS: usize = 1_000;
/// Bytes of NDJSON a worker takes at a time, at most (a chunk of large records ends early).
pub const CHUNK_BYTES: u64 = 4 << 20;
/// Problems reported per rejected file (the rest are only counted).
pub const MAX_PROBLEMS: usize = 100;

/// One record as read: NDJSON lines are parsed by the workers, other forms come parsed.
enum Raw {
    Text(String),
    Parsed(Value),
    /// A line that could not be read, and why.
    Unreadable(String),
}

/// A numbered chunk of records as read, and the bytes of input it came from.
type RawChunk = (usize, Vec<(Location, Raw)>, u64);

/// What a worker made of one chunk.
struct StagedChunk {
    records: Vec<Staged>,
    problems: Vec<Problem>,
    /// Bytes of input the chunk came from (for progress).
    bytes: u64,
}

/// How a file is loaded.
#[derive(Clone, Copy)]
pub struct Options {
    /// What to do with NHS numbers already stored.
    pub existing: ExistingRecords,
    /// Today's date, for the rules that need it.
    pub today: Date,
    /// Object ids for list items that lack one.
    pub new_id: fn() -> String,
    /// Records per write transaction.
    pub batch: usize,
}

/// Imports one file, whole or not at all.
///
/// NDJSON is streamed: a reader thread cuts it into chunks (at most [`CHUNK_RECORDS`] lines or
/// [`CHUNK_BYTES`] of text), worker threads (one per core) parse, validate and stage them
/// (stored form and index keys), and this thread gathers the chunks in file order into batches
/// of `batch` records, one transaction each, through [`PatientStore::bulk_load`], which makes
/// the load durable only at the end and undoes it on any problem or crash. What this pipeline
/// holds does not grow with the file: a few chunks of text (each at most [`CHUNK_BYTES`], or
/// one longer line), and about two batches of stored records. A Bundle or a single Patient is
/// read whole, then goes the same way.
pub fn import_file(
    store: &dyn PatientStore,
    runtime: &tokio::runtime::Handle,
    schemas: &Schemas,
    path: &Path,
    options: &Options,
) -> FileReport {
    let Options {
        existing,
        today,
        new_id,
        batch,
    } = *options;
    let batch = batch.max(1);
    let file = path.display().to_string();
    let fail = |problems: Vec<Problem>| FileReport {
        file: file.clone(),
        loaded: 0,
        problems,
    };
    let whole_file = |reason: String| {
        fail(vec![Problem {
            location: None,
            reason,
        }])
    };
    // a pipe or device (`import /dev/stdin`) has no length to show progress against
    let opened = std::fs::File::open(path).and_then(|f| {
        let meta = f.metadata()?;
        Ok((meta.is_file().then_some(meta.len()), f))
    });
    let (size, handle) = match opened {
        Ok(x) => x,
        Err(e) => return whole_file(format!("cannot read: {e}")),
    };
    let mut reader = std::io::BufReader::with_capacity(1 << 20, handle);
    let source = match Source::open(&mut reader) {
        Ok(s) => s,
        Err(p) => return fail(vec![p]),
    };
    let mut progress = crate::progress::Progress::bytes(size, &format!("importing {file}"));
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut problems = Vec::new();
    let mut problem_count = 0usize;
    let result = std::thread::scope(|scope| {
        let (work, work_queue) = mpsc::sync_channel::<RawChunk>(workers);
        let work_queue = Arc::new(Mutex::new(work_queue));
        // room for a batch's worth of staged chunks (within reason): the workers go on while a
        // batch commits
        let room = batch.div_ceil(CHUNK_RECORDS).clamp(workers, 64);
        let (staged, staged_queue) = mpsc::sync_channel::<(usize, StagedChunk)>(room);
        scope.spawn(move || source.send_chunks(reader, work));
        for _ in 0..workers {
            let (queue, staged) = (work_queue.clone(), staged.clone());
            scope.spawn(move || loop {
                let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok((n, chunk, bytes)) = job else { break };
                if staged
                    .send((n, stage(chunk, bytes, schemas, today, new_id, store)))
                    .is_err()
                {
                    break;
                }
            });
        }
        drop(staged);
        // chunks come back in any order; they are written in file order
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0usize;
        // the next transaction's records, and the input bytes they came from
        let (mut pending, mut pending_bytes) = (Vec::<Staged>::new(), 0u64);
        let (progress, problems, problem_count) =
            (&mut progress, &mut problems, &mut problem_count);
        // owns the queue of staged chunks: dropping it stops the reader and the workers
        let mut step = move || loop {
            if pending.len() < batch {
                if let Some(chunk) = waiting.remove(&next) {
                    next += 1;
                    let StagedChunk {
                        records,
                        problems: found,
                        bytes,
                    } = chunk;
                    *problem_count += found.len();
                    let room = MAX_PROBLEMS.saturating_sub(problems.len());
                    problems.extend(found.into_iter().take(room));
                    if *problem_count >= MAX_PROBLEMS {
                        return BulkStep::Abort;
                    }
                    if *problem_count > 0 {
                        // after a problem nothing more is written; the rest is only checked
                        let checked = pending.len() + records.len();
                        progress.advance(pending_bytes + bytes, checked as u64);
                        (pending, pending_bytes) = (Vec::new(), 0);
                        continue;
                    }
                    pending.extend(records);
                    pending_bytes += bytes;
                    continue;
                }
                match staged_queue.recv() {
                    Ok((n, chunk)) => {
                        waiting.insert(n, chunk);
                        continue;
                    }
                    Err(_) if *problem_count > 0 => return BulkStep::Abort,
                    Err(_) if pending.is_empty() => return BulkStep::Done,
                    // the end of the file: the last, shorter batch
                    Err(_) => {}
                }
            }
            // exactly `batch` records a transaction (chunks do not divide batches evenly)
            let rest = pending.split_off(batch.min(pending.len()));
            let records = std::mem::replace(&mut pending, rest);
            progress.advance(std::mem::take(&mut pending_bytes), records.len() as u64);
            return BulkStep::Batch(records);
        };
        let result = runtime.block_on(store.bulk_load(existing, &mut step));
        // stop the reader and workers, should the load have ended early
        drop(step);
        result
    });
    progress.finish();
    if problem_count > problems.len() {
        problems.push(Problem {
            location: None,
            reason: format!(
                "{} more problem(s) not shown; checking stopped",
                problem_count - problems.len()
            ),
        });
    }
    match result {
        Ok(loaded) => FileReport {
            file,
            loaded: loaded as usize,
            problems: vec![],
        },
        Err(StoreError::Aborted) => fail(problems),
        Err(e @ StoreError::AlreadyExists(_)) => {
            whole_file(format!("{e} (use --replace to store it as a new version)"))
        }
        Err(e) => whole_file(e.to_string()),
    }
}

/// How a file's records are read.
enum Source {
    /// One Patient per line; `first` is the first non-empty line, already read.
    Ndjson { first: (usize, String), line: usize },
    /// A Bundle or one Patient, read whole.
    Whole(Vec<(Location, Value)>),
}

impl Source {
    /// NDJSON when the first non-empty line is a whole Patient; otherwise the file is read
    /// whole (a Bundle, a pretty-printed Patient, or something to report).
    fn open(reader: &mut impl BufRead) -> Result<Source, Problem> {
        let problem = |reason: String| Problem {
            location: None,
            reason,
        };
        let mut text = String::new();
        let mut line = 0;
        loop {
            let start = text.len();
            let n = read_line(reader, &mut text).map_err(problem)?;
            line += 1;
            if n == 0 || !text[start..].trim().is_empty() {
                let candidate = text[start..].trim();
                if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(candidate) {
                    if m.get("resourceType").and_then(Value::as_str) == Some("Patient") {
                        return Ok(Source::Ndjson {
                            first: (line, candidate.to_string()),
                            line,
                        });
                    }
                }
                break;
            }
        }
        reader.read_to_string(&mut text).map_err(|e| {
            problem(if e.kind() == std::io::ErrorKind::InvalidData {
                "the file is not UTF-8".into()
            } else {
                format!("cannot read: {e}")
            })
        })?;
        read_records(&text).map(Source::Whole)
    }

    /// Cuts the records into numbered chunks for the workers, until the file ends or nobody
    /// listens any more.
    fn send_chunks(self, mut reader: impl BufRead, work: mpsc::SyncSender<RawChunk>) {
        match self {
            Source::Whole(records) => {
                let mut records = records.into_iter().peekable();
                let mut n = 0;
                while records.peek().is_some() {
                    let chunk: Vec<_> = records
                        .by_ref()
                        .take(CHUNK_RECORDS)
                        .map(|(l, v)| (l, Raw::Parsed(v)))
                        .collect();
                    // the bytes were all read up front; progress counts records here
                    if work.send((n, chunk, 0)).is_err() {
                        return;
                    }
                    n += 1;
                }
            }
            Source::Ndjson { first, mut line } => {
                let mut lines = vec![(Location::Line(first.0), Raw::Text(first.1))];
                let mut bytes = 0u64;
                let mut n = 0;
                let mut buf = String::new();
                loop {
                    buf.clear();
                    let read = match read_line(&mut reader, &mut buf) {
                        Ok(read) => read,
                        Err(reason) => {
                            line += 1;
                            lines.push((Location::Line(line), Raw::Unreadable(reason)));
                            0
                        }
                    };
                    if read > 0 {
                        line += 1;
                        bytes += read as u64;
                        if !buf.trim().is_empty() {
                            lines.push((Location::Line(line), Raw::Text(buf.trim().to_string())));
                        }
                    }
                    let full = lines.len() >= CHUNK_RECORDS || bytes >= CHUNK_BYTES;
                    if full || (read == 0 && !lines.is_empty()) {
                        let chunk = std::mem::take(&mut lines);
                        if work.send((n, chunk, std::mem::take(&mut bytes))).is_err() {
                            return;
                        }
                        n += 1;
                    }
                    if read == 0 {
                        return;
                    }
                }
            }
        }
    }
}

/// Reads one line; a line that is not UTF-8 is a problem worded for the user.
fn read_line(reader: &mut impl BufRead, into: &mut String) -> Result<usize, String> {
    reader.read_line(into).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidData {
            "the file is not UTF-8".to_string()
        } else {
            format!("cannot read: {e}")
        }
    })
}

/// Parses, validates and stages one chunk (a worker's job).
fn stage(
    chunk: Vec<(Location, Raw)>,
    bytes: u64,
    schemas: &Schemas,
    today: Date,
    new_id: fn() -> String,
    store: &dyn PatientStore,
) -> StagedChunk {
    let mut records = Vec::with_capacity(chunk.len());
    let mut problems = Vec::new();
    let mut new_id = new_id;
    // one record at a time, from text to its stored form: a parsed document is ten times the
    // size of its text, so a whole chunk of them would dominate the import's memory
    for (location, raw) in chunk {
        let doc = match raw {
            Raw::Parsed(v) => v,
            Raw::Unreadable(reason) => {
                problems.push(Problem {
                    location: Some(location),
                    reason,
                });
                continue;
            }
            Raw::Text(t) => match serde_json::from_str::<Value>(&t) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(Problem {
                        location: Some(location),
                        reason: format!("not valid JSON: {e}"),
                    });
                    continue;
                }
            },
        };
        match validate_records(vec![(location, doc)], schemas, today, &mut new_id) {
            // once a record is bad the chunk (and the file) is rejected: the rest are only checked
            Ok(patients) if problems.is_empty() => records.extend(patients.iter().map(|p| {
                // the stored form is made here, on a worker, so that the one writer only writes
                let mut staged = Staged::new(p);
                store.prepare(&mut staged);
                staged
            })),
            Ok(_) => {}
            Err(found) => problems.extend(found),
        }
    }
    StagedChunk {
        records,
        problems,
        bytes,
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
