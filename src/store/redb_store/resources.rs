//! Reading Tasks and Communications (see [`crate::store::resource`]). A file written before
//! they existed has no such tables: it holds none.

use std::ops::Bound;

use redb::{ReadTransaction, TableError};

use super::tables::{RESOURCES, RESOURCE_INDEX, RESOURCE_VERSIONS};
use crate::store::resource::{IndexQuery, ResourceKind, ResourceVersion};
use crate::store::StoreError;

/// `None` where the table was never created (nothing of the kind is stored).
pub(super) fn missing_is_empty<T>(opened: Result<T, TableError>) -> Result<Option<T>, StoreError> {
    match opened {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn current(
    txn: &ReadTransaction,
    kind: ResourceKind,
    id: &str,
) -> Result<Option<ResourceVersion>, StoreError> {
    let Some(resources) = missing_is_empty(txn.open_table(RESOURCES))? else {
        return Ok(None);
    };
    let Some(version) = resources.get((kind.name(), id))?.map(|g| g.value()) else {
        return Ok(None);
    };
    let versions = txn.open_table(RESOURCE_VERSIONS)?;
    let stored = versions.get((kind.name(), id, version))?.ok_or_else(|| {
        StoreError::Corrupt(format!("{} {id} has no version {version}", kind.name()))
    })?;
    Ok(Some(stored.value().map_err(StoreError::Corrupt)?))
}

pub fn history(
    txn: &ReadTransaction,
    kind: ResourceKind,
    id: &str,
) -> Result<Vec<ResourceVersion>, StoreError> {
    let Some(versions) = missing_is_empty(txn.open_table(RESOURCE_VERSIONS))? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in versions
        .range((kind.name(), id, 0)..=(kind.name(), id, u32::MAX))?
        .rev()
    {
        out.push(item?.1.value().map_err(StoreError::Corrupt)?);
    }
    Ok(out)
}

pub fn ids(txn: &ReadTransaction, q: &IndexQuery) -> Result<Vec<String>, StoreError> {
    let Some(index) = missing_is_empty(txn.open_table(RESOURCE_INDEX))? else {
        return Ok(Vec::new());
    };
    let (kind, key) = (q.kind.name(), q.key.as_str());
    let end = match &q.below {
        Some(below) => Bound::Excluded((kind, key, below.as_str(), "")),
        None => Bound::Excluded((kind, key, "\u{10FFFF}", "")),
    };
    let mut out = Vec::new();
    for item in
        index.range::<(&str, &str, &str, &str)>((Bound::Included((kind, key, "", "")), end))?
    {
        out.push(item?.0.value().3.to_string());
    }
    Ok(out)
}
