//! Moving data out of and between stores: `export` (current records as NDJSON), `copy` (a
//! whole store into a new one) and `verify` (whether two stores hold the same).
//!
//! All three read a store page by page from one snapshot ([`PatientStore::snapshot`]: a read
//! transaction held open), so memory stays flat however large the store, and what is read is
//! the store as of one moment even while nodes write to it. A copy is all-or-nothing: the
//! target shows nothing of it until the last page is in and the indexes are built, and an
//! interrupted copy leaves the target empty, to be run again. A copy holds what the source held
//! when it began: to move a service, stop its nodes first (a redb file is locked by the copy
//! itself), and `verify` afterwards.

use std::cmp::Ordering;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::progress::Progress;
use crate::store::dump::{After, Entry, Part, Snapshot};
use crate::store::{PatientStore, StoreError};

/// Entries read per page.
pub const PAGE: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
}

/// Which current records an export writes: all, or (`since`) those whose `meta.lastUpdated` is
/// at or after an instant — records written before versions were dated have none and are
/// always written.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub since: Option<time::OffsetDateTime>,
}

impl Selection {
    fn includes(&self, json: &[u8]) -> bool {
        let Some(since) = self.since else {
            return true;
        };
        #[derive(serde::Deserialize)]
        struct Dated {
            meta: Option<Meta>,
        }
        #[derive(serde::Deserialize)]
        struct Meta {
            #[serde(rename = "lastUpdated")]
            last_updated: Option<String>,
        }
        let at = serde_json::from_slice::<Dated>(json)
            .ok()
            .and_then(|d| d.meta?.last_updated)
            .and_then(|at| {
                time::OffsetDateTime::parse(&at, &time::format_description::well_known::Rfc3339)
                    .ok()
            });
        at.is_none_or(|at| at >= since)
    }
}

/// Writes the current version of every record `selection` takes, one JSON document a line, in
/// NHS-number order; returns how many. Every record is written as stored — restricted ones
/// unredacted: an export is a copy of the database, to be kept as safely. `progress` is told
/// of every page of records read. The one export: `pds-facade export` and the back office's
/// `GET /Patient/$export` both write with it.
pub async fn export<W: Write + ?Sized>(
    store: &dyn PatientStore,
    out: &mut W,
    selection: &Selection,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, TransferError> {
    let snapshot = store.snapshot().await?;
    let mut after = After::Start;
    let mut written = 0;
    loop {
        let page = snapshot.page(Part::Current, &after, PAGE).await?;
        let Some(last) = page.last() else {
            out.flush()?;
            return Ok(written);
        };
        after = last.key();
        for entry in &page {
            if let Entry::Current { record, .. } = entry {
                if selection.includes(&record.json) {
                    out.write_all(&record.json)?;
                    out.write_all(b"\n")?;
                    written += 1;
                }
            }
        }
        progress(page.len() as u64);
    }
}

/// A file for unredacted records, written beside its name as `<name>.partial` — a new file,
/// readable by its owner only, that no other process has open — and renamed into place once
/// complete and on disk. Dropped unkept (an error, a cancelled export), the partial file is
/// removed.
pub struct PrivateFile {
    path: PathBuf,
    partial: PathBuf,
    pub writer: std::io::BufWriter<std::fs::File>,
    kept: bool,
}

impl PrivateFile {
    pub fn create(path: &Path) -> std::io::Result<PrivateFile> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        // one left by an export that was killed
        match std::fs::remove_file(&partial) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        }
        let file = options.open(&partial)?;
        Ok(PrivateFile {
            path: path.to_path_buf(),
            partial,
            writer: std::io::BufWriter::new(file),
            kept: false,
        })
    }

    /// Flushes, syncs and renames the file into place.
    pub fn keep(&mut self) -> std::io::Result<()> {
        self.writer.flush()?;
        self.writer.get_ref().sync_all()?;
        std::fs::rename(&self.partial, &self.path)?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for PrivateFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Progress in records, from the versions stream (a record's versions follow each other).
#[derive(Default)]
struct Records {
    last: Option<crate::domain::NhsNumber>,
}

impl Records {
    /// 1 for the first version of a record, 0 otherwise.
    fn count(&mut self, entry: &Entry) -> u64 {
        match entry {
            Entry::Version { id, .. } => u64::from(self.last.replace(*id) != Some(*id)),
            _ => 0,
        }
    }
}

/// What a copy moved: how many entries of each part, and the records.
#[derive(Debug, Default)]
pub struct Copied {
    pub parts: Vec<(Part, u64)>,
    pub records: u64,
}

/// Copies everything `from` holds into `to`, which must be empty (see the module notes).
pub async fn copy(
    from: &dyn PatientStore,
    to: &dyn PatientStore,
    progress: &mut Progress,
) -> Result<Copied, StoreError> {
    let snapshot = from.snapshot().await?;
    let mut restore = to.restore().await?;
    let mut copied = Copied::default();
    for part in Part::COPIED {
        let mut after = After::Start;
        let mut n = 0u64;
        let mut seen = Records::default();
        loop {
            let page = snapshot.page(part, &after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.key();
            n += page.len() as u64;
            progress.inc(page.iter().map(|e| seen.count(e)).sum());
            restore.put(page).await?;
        }
        copied.parts.push((part, n));
    }
    copied.records = restore.finish().await?;
    Ok(copied)
}

/// How two stores differ.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Entries of each part in each store.
    pub parts: Vec<(Part, u64, u64)>,
    /// How many entries differ (or are in one store only).
    pub differences: u64,
    /// The first [`Comparison::SHOWN`] of them, described by key (never by content).
    pub shown: Vec<String>,
}

impl Comparison {
    pub const SHOWN: usize = 50;

    fn differ(&mut self, what: String) {
        self.differences += 1;
        if self.shown.len() < Comparison::SHOWN {
            self.shown.push(what);
        }
    }
}

/// One part of a store, read a page at a time.
struct Reader<'a> {
    snapshot: &'a dyn Snapshot,
    part: Part,
    after: After,
    page: std::collections::VecDeque<Entry>,
    done: bool,
    read: u64,
}

impl<'a> Reader<'a> {
    fn new(snapshot: &'a dyn Snapshot, part: Part) -> Reader<'a> {
        Reader {
            snapshot,
            part,
            after: After::Start,
            page: Default::default(),
            done: false,
            read: 0,
        }
    }

    /// Reads the next page when this one is used up (and the part is not done).
    async fn fill(&mut self) -> Result<(), StoreError> {
        if self.page.is_empty() && !self.done {
            let page = self.snapshot.page(self.part, &self.after, PAGE).await?;
            match page.last() {
                Some(last) => self.after = last.key(),
                None => self.done = true,
            }
            self.page.extend(page);
        }
        Ok(())
    }

    fn front(&self) -> Option<&Entry> {
        self.page.front()
    }

    fn advance(&mut self) {
        self.read += 1;
        self.page.pop_front();
    }
}

fn order(a: &After, b: &After) -> Ordering {
    match (a, b) {
        (After::Number(a1, a2), After::Number(b1, b2)) => (a1, a2).cmp(&(b1, b2)),
        (After::Text(a), After::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
        (After::Resource(k1, i1, v1), After::Resource(k2, i2, v2)) => {
            (k1.as_bytes(), i1.as_bytes(), v1).cmp(&(k2.as_bytes(), i2.as_bytes(), v2))
        }
        _ => Ordering::Equal,
    }
}

/// Compares everything two stores hold (as a copy moves it, and the current records with the
/// flags GET and search go by), entry by entry, each store as of one moment.
pub async fn verify(
    a: &dyn PatientStore,
    b: &dyn PatientStore,
    progress: &mut Progress,
) -> Result<Comparison, StoreError> {
    let (a, b) = (a.snapshot().await?, b.snapshot().await?);
    let mut comparison = Comparison::default();
    for part in Part::COMPARED {
        let (mut left, mut right) = (Reader::new(&*a, part), Reader::new(&*b, part));
        let mut seen = Records::default();
        loop {
            left.fill().await?;
            right.fill().await?;
            // which side moves on: the one whose key comes first, or both on the same key
            let (l, r) = (left.front(), right.front());
            let step = match (l, r) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(l), Some(r)) => order(&l.key(), &r.key()),
            };
            match (step, l, r) {
                (Ordering::Less, Some(l), _) => {
                    comparison.differ(format!("only in the first: {}", l.describe()))
                }
                (Ordering::Greater, _, Some(r)) => {
                    comparison.differ(format!("only in the second: {}", r.describe()))
                }
                (_, Some(l), Some(r)) => {
                    if l != r {
                        comparison.differ(format!("different: {}", l.describe()));
                    }
                    progress.inc(seen.count(l));
                }
                _ => unreachable!("a side without an entry comes after the other"),
            }
            if step != Ordering::Greater {
                left.advance();
            }
            if step != Ordering::Less {
                right.advance();
            }
        }
        comparison.parts.push((part, left.read, right.read));
    }
    Ok(comparison)
}
