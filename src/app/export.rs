//! Bulk export jobs (FHIR Bulk Data Access, asynchronous pattern): a back-office kick-off
//! starts a background task that writes the current records — unredacted, exactly as
//! `pds-facade export` writes them, with the same code ([`crate::transfer::export`]) — into a
//! private file; the caller polls the job's status, downloads the file and deletes the job.
//!
//! A job's file is `<dir>/<job id>/Patient.ndjson`: owner-only permissions, written as
//! `.partial` and renamed when complete. A job lives in this process only: it does not survive
//! a restart (the files a previous run left are removed at start-up, [`Exports::clean`]), and
//! with several nodes on one database it is known to the node that started it. A finished job
//! and its file are removed [`Exports::expiry`] after it finished.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::{require_back_office, App};
use crate::auth::Caller;
use crate::domain::export::ExportRequest;
use crate::domain::{ErrorCode, PdsError};
use crate::store::PatientStore;
use crate::transfer::{self, PrivateFile, Selection};

/// The one output file of a job.
pub const OUTPUT: &str = "Patient.ndjson";

/// Jobs that may run at once (each holds a read snapshot of the store open); more are refused
/// with 429 and Retry-After.
pub const MAX_RUNNING: usize = 4;

/// How long a finished job and its file are kept, by default.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// The export jobs of this process.
pub struct Exports {
    /// Where the jobs' files go (created, owner-only, when the first job starts).
    pub dir: PathBuf,
    /// How long a finished job is kept.
    pub expiry: Duration,
    jobs: Mutex<HashMap<String, Job>>,
}

struct Job {
    progress: Arc<Progress>,
    task: Option<tokio::task::JoinHandle<()>>,
    transaction_time: String,
    request: String,
}

#[derive(Default)]
struct Progress {
    /// Records read so far, and the store's count when the job started.
    read: AtomicU64,
    total: AtomicU64,
    state: Mutex<State>,
}

#[derive(Clone, Debug, Default)]
enum State {
    #[default]
    Running,
    Complete {
        count: u64,
    },
    Failed(String),
}

/// What a status request finds.
#[derive(Debug)]
pub enum ExportStatus {
    /// Still running: records read so far, of about this many.
    Running { read: u64, total: u64 },
    /// The Bulk Data completion manifest.
    Complete(Value),
    /// Why it failed (no personal data: a store or file error).
    Failed(String),
}

impl Exports {
    pub fn new(dir: PathBuf, expiry: Duration) -> Exports {
        Exports {
            dir,
            expiry,
            jobs: Mutex::new(HashMap::new()),
        }
    }

    /// Removes what jobs of a previous run left in the directory (only directories named by a
    /// job id: nothing else there is touched).
    pub fn clean(&self) -> std::io::Result<usize> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let is_job = entry
                .file_name()
                .to_str()
                .is_some_and(|n| uuid::Uuid::parse_str(n).is_ok());
            if is_job && entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn job_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Job>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets a job and removes its files.
    fn remove(&self, id: &str) -> Option<Job> {
        let job = self.lock().remove(id);
        let _ = std::fs::remove_dir_all(self.job_dir(id));
        job
    }
}

/// Creates `dir` (and its parents) readable by its owner only, if missing.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
}

/// The job: the export into the private file.
async fn run(
    store: Arc<dyn PatientStore>,
    path: PathBuf,
    selection: Selection,
    progress: Arc<Progress>,
) -> Result<u64, transfer::TransferError> {
    let total = store.count().await?;
    progress.total.store(total, Ordering::Relaxed);
    let mut file = PrivateFile::create(&path)?;
    let read = &progress.read;
    let n = transfer::export(&*store, &mut file.writer, &selection, &mut |n| {
        read.fetch_add(n, Ordering::Relaxed);
    })
    .await?;
    file.keep()?;
    Ok(n)
}

impl App {
    /// `$export` kick-off (back office): starts a job; returns its id.
    pub async fn start_export(
        &self,
        caller: &Caller,
        request: ExportRequest,
        query: &str,
    ) -> Result<String, PdsError> {
        require_back_office(caller)?;
        let exports = self.exports.clone();
        let id = uuid::Uuid::new_v4().to_string();
        let dir = exports.job_dir(&id);
        private_dir(&exports.dir)
            .and_then(|()| private_dir(&dir))
            .map_err(|e| {
                tracing::error!(error = %e, dir = %exports.dir.display(), "cannot create the export directory");
                PdsError::new(ErrorCode::UnknownError, "The export could not be started: its directory cannot be created")
            })?;
        let progress = Arc::new(Progress::default());
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        let job = Job {
            progress: progress.clone(),
            task: None,
            transaction_time: now(),
            request: format!("{}/Patient/$export{query}", self.base_url),
        };
        let mut jobs = exports.lock();
        let running = jobs
            .values()
            .filter(|j| {
                matches!(
                    *j.progress.state.lock().unwrap_or_else(|e| e.into_inner()),
                    State::Running
                )
            })
            .count();
        if running >= MAX_RUNNING {
            drop(jobs);
            let _ = std::fs::remove_dir(&dir);
            return Err(PdsError::new(
                ErrorCode::TooManyRequests,
                format!("{running} exports are running already; retry after the time in the Retry-After header"),
            ));
        }
        jobs.insert(id.clone(), job);
        let (store, path, selection) = (
            self.store.clone(),
            dir.join(OUTPUT),
            Selection {
                since: request.since,
            },
        );
        let task_id = id.clone();
        let task_exports = exports.clone();
        let task = tokio::spawn(async move {
            let result = run(store, path, selection, progress.clone()).await;
            let state = match result {
                Ok(count) => {
                    tracing::info!(job = %task_id, records = count, "export complete");
                    State::Complete { count }
                }
                Err(e) => {
                    tracing::error!(job = %task_id, error = %e, "export failed");
                    State::Failed(e.to_string())
                }
            };
            *progress.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
            tokio::time::sleep(task_exports.expiry).await;
            tracing::info!(job = %task_id, "export expired; its file is removed");
            task_exports.remove(&task_id);
        });
        if let Some(job) = jobs.get_mut(&id) {
            job.task = Some(task);
        }
        drop(jobs);
        tracing::info!(job = %id, subject = %caller.subject, "export started");
        Ok(id)
    }

    /// A job's status (back office); 404 for a job this process does not hold.
    pub fn export_status(&self, caller: &Caller, id: &str) -> Result<ExportStatus, PdsError> {
        require_back_office(caller)?;
        let jobs = self.exports.lock();
        let job = jobs.get(id).ok_or_else(unknown_job)?;
        let state = job
            .progress
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(match state {
            State::Running => ExportStatus::Running {
                read: job.progress.read.load(Ordering::Relaxed),
                total: job.progress.total.load(Ordering::Relaxed),
            },
            State::Failed(why) => ExportStatus::Failed(why),
            State::Complete { count } => ExportStatus::Complete(json!({
                "transactionTime": job.transaction_time,
                "request": job.request,
                "requiresAccessToken": true,
                "output": [{
                    "type": "Patient",
                    "url": format!("{}/_export/{id}/{OUTPUT}", self.base_url),
                    "count": count,
                }],
                "error": [],
            })),
        })
    }

    /// Cancels a job (if still running) and removes it and its files (back office).
    pub async fn delete_export(&self, caller: &Caller, id: &str) -> Result<(), PdsError> {
        require_back_office(caller)?;
        let task = self
            .exports
            .lock()
            .get_mut(id)
            .ok_or_else(unknown_job)?
            .task
            .take();
        if let Some(task) = task {
            task.abort();
            // stopped (its partial file removed) before the files go
            let _ = task.await;
        }
        self.exports.remove(id);
        tracing::info!(job = %id, subject = %caller.subject, "export deleted");
        Ok(())
    }

    /// A complete job's output file, opened (back office); 404 for an unknown or unfinished job.
    pub async fn export_file(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<tokio::fs::File, PdsError> {
        if !matches!(self.export_status(caller, id)?, ExportStatus::Complete(_)) {
            return Err(PdsError::new(
                ErrorCode::ResourceNotFound,
                "Resource not found - the export is not complete",
            ));
        }
        tokio::fs::File::open(self.exports.job_dir(id).join(OUTPUT))
            .await
            .map_err(|_| unknown_job())
    }
}

fn unknown_job() -> PdsError {
    PdsError::new(
        ErrorCode::ResourceNotFound,
        "Resource not found - no such export job (jobs do not survive a restart, and expire)",
    )
}
