//! Rewriting a format-1 file in format 2 (`pds-facade migrate --db FILE`).
//!
//! Format 1 kept each current record twice (in `patients` and in `versions`), as plain JSON,
//! and a second table of idempotency records keyed by time. Format 2 keeps every version once,
//! compressed (see [`super::packing`]), the newest being the current record. This program
//! reads both, so a format-1 file serves as it is; the migration gives the space back. It
//! compresses the versions in batches, each its own transaction: a rewritten value reads the
//! same as the one it replaces, so an interrupted migration leaves a file that serves as well
//! as before and that the next run finishes. Only the last step, durable, drops the tables
//! format 2 does not keep and records format 2; then the file is compacted.

use std::ops::Bound;
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::tables::{FORMAT, FORMAT_1, META};
use crate::store::StoreError;

/// Format 1's table of current records (header and JSON).
const PATIENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("patients");
/// [`super::tables::VERSIONS`] as raw bytes (its values are declared as byte strings).
const VERSIONS_RAW: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("versions");

/// Values rewritten per transaction.
const BATCH: usize = 20_000;

/// What a migration did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Migrated {
    /// The format the file was in.
    pub from: u8,
    /// Versions compressed.
    pub versions: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Rewrites the file at `path` in the current format (nothing to do if it is in it already).
/// Nothing else may have the file open.
pub fn migrate(path: &Path) -> Result<Migrated, StoreError> {
    let bytes_before = std::fs::metadata(path).map_or(0, |m| m.len());
    let mut db = redb::Database::builder()
        .open(path)
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let from = {
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        let format = meta.get("format")?.map(|g| g.value().to_vec());
        match format.as_deref() {
            Some([f]) => *f,
            _ => return Err(StoreError::Corrupt("the store format".into())),
        }
    };
    let mut done = Migrated {
        from,
        bytes_before,
        ..Migrated::default()
    };
    if from == FORMAT {
        done.bytes_after = bytes_before;
        return Ok(done);
    }
    if from != FORMAT_1 {
        return Err(StoreError::Corrupt(format!(
            "unknown store format {from} (this program writes {FORMAT})"
        )));
    }
    // versions still kept as plain JSON
    let mut after: Option<(u64, u32)> = None;
    loop {
        let txn = db.begin_write()?;
        let (n, last) = {
            let mut raw = txn.open_table(VERSIONS_RAW)?;
            let from = after.map_or(Bound::Unbounded, Bound::Excluded);
            let batch: Vec<((u64, u32), Vec<u8>)> = raw
                .range::<(u64, u32)>((from, Bound::Unbounded))?
                .take(BATCH)
                .map(|e| e.map(|(k, v)| (k.value(), v.value().to_vec())))
                .collect::<Result<_, _>>()?;
            let mut rewritten = 0u64;
            for (key, value) in &batch {
                if let (json, None) = super::packing::unpack(value)? {
                    let flags = super::flags_of(&json)?;
                    raw.insert(key, super::packing::pack(&json, flags).as_slice())?;
                    rewritten += 1;
                }
            }
            done.versions += rewritten;
            (batch.len(), batch.last().map(|(k, _)| *k))
        };
        txn.commit()?;
        match last {
            Some(k) if n == BATCH => after = Some(k),
            _ => break,
        }
    }
    let txn = db.begin_write()?;
    // format 1's tables that format 2 no longer keeps: the current records (the newest
    // version is the current one; the count of records is in `meta` since the file was first
    // opened by this program) and the idempotency records by time (`requests` is swept)
    {
        let mut tables = super::tables::Tables::open(&txn)?;
        super::count_records_once(&txn, &mut tables)?;
    }
    txn.delete_table(PATIENTS)?;
    let by_time: TableDefinition<(u64, &str), ()> = TableDefinition::new("requests_by_time");
    txn.delete_table(by_time)?;
    txn.open_table(META)?
        .insert("format", [FORMAT].as_slice())?;
    txn.commit()?;
    // the space the old values took, given back to the file system
    db.compact()
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    drop(db);
    done.bytes_after = std::fs::metadata(path).map_or(0, |m| m.len());
    Ok(done)
}
