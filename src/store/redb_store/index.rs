//! The search indexes: key → NHS numbers of every record any version of which had that key.
//!
//! A record is indexed under every value any of its versions held; entries are never removed
//! by a change, so past values stay findable for `_history` searches (a search checks each
//! candidate against the record, so the indexes only have to find a superset quickly).

use std::collections::{BTreeSet, HashSet};

use redb::{
    MultimapTableDefinition, ReadTransaction, ReadableMultimapTable, ReadableTable,
    WriteTransaction,
};

use super::tables::VERSIONS;
use crate::domain::index::{self, IndexKey, Lookup};
use crate::domain::NhsNumber;
use crate::store::StoreError;

type Dated = MultimapTableDefinition<'static, (&'static str, u32), u64>;
type Flat = MultimapTableDefinition<'static, &'static str, u64>;

const FAMILY: Dated = MultimapTableDefinition::new("idx_family_birth");
const PHONETIC: Dated = MultimapTableDefinition::new("idx_phonetic_birth");
const GIVEN: Dated = MultimapTableDefinition::new("idx_given_birth");
const POSTCODE: Flat = MultimapTableDefinition::new("idx_postcode");
const PHONE: Flat = MultimapTableDefinition::new("idx_phone");
const EMAIL: Flat = MultimapTableDefinition::new("idx_email");
const GP: Flat = MultimapTableDefinition::new("idx_gp");
/// The family-name index again, birth date first: a wildcard family search (`fam*`) on one
/// birth date is then one short range, however many family names share the prefix (with
/// England's name frequencies, thousands share three letters).
pub(super) const BIRTH_FAMILY: MultimapTableDefinition<'static, (u32, &'static str), u64> =
    MultimapTableDefinition::new("idx_birth_family");
/// `meta` key saying [`BIRTH_FAMILY`] holds every entry of [`FAMILY`] (files written before it
/// existed get it built when first opened: see [`build_birth_first_once`]).
pub(super) const BIRTH_FAMILY_BUILT: &str = "idx_birth_family";
/// Widest birth range (as `yyyymmdd` numbers: about a month) a wildcard family search reads
/// birth date first; a wider one seeks family name by family name.
const BIRTH_FIRST_SPAN: u32 = 100;

/// What an entry of a dated / flat index table stands for.
type DatedKey = fn(String, u32) -> IndexKey;
type FlatKey = fn(String) -> IndexKey;

/// Each index table with the key its entries stand for.
const DATED: [(Dated, DatedKey); 3] = [
    (FAMILY, IndexKey::Family),
    (PHONETIC, IndexKey::Phonetic),
    (GIVEN, IndexKey::Given),
];
const FLAT: [(Flat, FlatKey); 4] = [
    (POSTCODE, IndexKey::Postcode),
    (PHONE, IndexKey::Phone),
    (EMAIL, IndexKey::Email),
    (GP, IndexKey::Gp),
];

/// The index tables, open in a write transaction.
pub struct Indexes<'t> {
    family: redb::MultimapTable<'t, (&'static str, u32), u64>,
    phonetic: redb::MultimapTable<'t, (&'static str, u32), u64>,
    given: redb::MultimapTable<'t, (&'static str, u32), u64>,
    postcode: redb::MultimapTable<'t, &'static str, u64>,
    phone: redb::MultimapTable<'t, &'static str, u64>,
    email: redb::MultimapTable<'t, &'static str, u64>,
    gp: redb::MultimapTable<'t, &'static str, u64>,
    birth_family: redb::MultimapTable<'t, (u32, &'static str), u64>,
}

impl<'t> Indexes<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Indexes<'t>, StoreError> {
        Ok(Indexes {
            family: txn.open_multimap_table(FAMILY)?,
            phonetic: txn.open_multimap_table(PHONETIC)?,
            given: txn.open_multimap_table(GIVEN)?,
            postcode: txn.open_multimap_table(POSTCODE)?,
            phone: txn.open_multimap_table(PHONE)?,
            email: txn.open_multimap_table(EMAIL)?,
            gp: txn.open_multimap_table(GP)?,
            birth_family: txn.open_multimap_table(BIRTH_FAMILY)?,
        })
    }

    /// Adds `id` under `key` (an entry already there stays as it is).
    pub fn insert(&mut self, key: &IndexKey, id: u64) -> Result<(), StoreError> {
        match key {
            IndexKey::Family(v, b) => {
                self.birth_family.insert((*b, v.as_str()), id)?;
                self.family.insert((v.as_str(), *b), id)
            }
            IndexKey::Phonetic(v, b) => self.phonetic.insert((v.as_str(), *b), id),
            IndexKey::Given(v, b) => self.given.insert((v.as_str(), *b), id),
            IndexKey::Postcode(v) => self.postcode.insert(v.as_str(), id),
            IndexKey::Phone(v) => self.phone.insert(v.as_str(), id),
            IndexKey::Email(v) => self.email.insert(v.as_str(), id),
            IndexKey::Gp(v) => self.gp.insert(v.as_str(), id),
        }?;
        Ok(())
    }
}

/// The records the indexes hold under any of `lookups`.
pub fn candidates(txn: &ReadTransaction, lookups: &[Lookup]) -> Result<Vec<NhsNumber>, StoreError> {
    let mut found = BTreeSet::new();
    let mut collect = |values: redb::MultimapValue<u64>| -> Result<(), StoreError> {
        for v in values {
            found.insert(v?.value());
        }
        Ok(())
    };
    for lookup in lookups {
        match lookup {
            Lookup::Family {
                name,
                prefix: false,
                birth,
            }
            | Lookup::Phonetic { code: name, birth }
            | Lookup::Given { name, birth } => {
                let def = match lookup {
                    Lookup::Family { .. } => FAMILY,
                    Lookup::Phonetic { .. } => PHONETIC,
                    _ => GIVEN,
                };
                let table = txn.open_multimap_table(def)?;
                for entry in table.range((name.as_str(), birth.0)..=(name.as_str(), birth.1))? {
                    collect(entry?.1)?;
                }
            }
            Lookup::Family {
                name,
                prefix: true,
                birth,
            } if birth.1.saturating_sub(birth.0) <= BIRTH_FIRST_SPAN => {
                // Skip-scan by birth date: for each date in the range, the family names from
                // the prefix on, then on to the next date.
                let table = txn.open_multimap_table(BIRTH_FAMILY)?;
                let mut seek = Some(birth.0);
                while let Some(from) = seek.take() {
                    for entry in table.range((from, name.as_str())..=(birth.1, "\u{10ffff}"))? {
                        let (key, values) = entry?;
                        let (born, family) = key.value();
                        if family.starts_with(name.as_str()) {
                            collect(values)?;
                            continue;
                        }
                        // before the prefix on a later date: seek to it there; past it: on
                        // to the next date
                        let next = if born > from && family < name.as_str() {
                            Some(born)
                        } else {
                            born.checked_add(1)
                        };
                        seek = next.filter(|d| *d <= birth.1);
                        break;
                    }
                }
            }
            Lookup::Family {
                name,
                prefix: true,
                birth,
            } => {
                // Skip-scan: for each family name with the prefix, seek straight to its
                // birth-date range, then on to the next family name.
                let table = txn.open_multimap_table(FAMILY)?;
                let mut seek: Option<(String, u32)> = Some((name.clone(), birth.0));
                while let Some((from, from_birth)) = seek.take() {
                    for entry in table.range((from.as_str(), from_birth)..)? {
                        let (key, values) = entry?;
                        let (family, born) = key.value();
                        if !family.starts_with(name.as_str()) {
                            break;
                        }
                        if born < birth.0 {
                            seek = Some((family.to_string(), birth.0));
                            break;
                        }
                        if born > birth.1 {
                            seek = Some((format!("{family}\0"), 0));
                            break;
                        }
                        collect(values)?;
                    }
                }
            }
            Lookup::Postcode { code, prefix } => {
                let table = txn.open_multimap_table(POSTCODE)?;
                if *prefix {
                    for entry in table.range(code.as_str()..)? {
                        let (key, values) = entry?;
                        if !key.value().starts_with(code.as_str()) {
                            break;
                        }
                        collect(values)?;
                    }
                } else {
                    collect(table.get(code.as_str())?)?;
                }
            }
            Lookup::Phone(v) | Lookup::Email(v) | Lookup::Gp(v) => {
                let def = match lookup {
                    Lookup::Phone(_) => PHONE,
                    Lookup::Email(_) => EMAIL,
                    _ => GP,
                };
                collect(txn.open_multimap_table(def)?.get(v.as_str())?)?;
            }
        }
    }
    found
        .into_iter()
        .map(|n| NhsNumber::from_u64(n).map_err(|e| StoreError::Corrupt(e.to_string())))
        .collect()
}

/// Rebuilds every index from the stored versions; returns how many records.
pub fn rebuild(txn: &WriteTransaction) -> Result<u64, StoreError> {
    for (t, _) in DATED {
        txn.delete_multimap_table(t)?;
    }
    for (t, _) in FLAT {
        txn.delete_multimap_table(t)?;
    }
    txn.delete_multimap_table(BIRTH_FAMILY)?;
    let mut indexes = Indexes::open(txn)?;
    let versions = txn.open_table(VERSIONS)?;
    let mut records = HashSet::new();
    for entry in versions.iter()? {
        let (k, v) = entry?;
        let id = k.value().0;
        for key in index::keys(&parse_version(v.value())?) {
            indexes.insert(&key, id)?;
        }
        records.insert(id);
    }
    Ok(records.len() as u64)
}

/// Compares the indexes with the records; each difference is described (empty: consistent).
pub fn check(txn: &ReadTransaction) -> Result<Vec<String>, StoreError> {
    // what the versions say the indexes hold
    let mut expected: BTreeSet<(IndexKey, u64)> = BTreeSet::new();
    for entry in txn.open_table(VERSIONS)?.iter()? {
        let (k, v) = entry?;
        let id = k.value().0;
        expected.extend(
            index::keys(&parse_version(v.value())?)
                .into_iter()
                .map(|key| (key, id)),
        );
    }
    // what they hold
    let mut actual: BTreeSet<(IndexKey, u64)> = BTreeSet::new();
    for (def, key_of) in DATED {
        for entry in txn.open_multimap_table(def)?.iter()? {
            let (key, values) = entry?;
            let (name, birth) = key.value();
            for v in values {
                actual.insert((key_of(name.into(), birth), v?.value()));
            }
        }
    }
    for (def, key_of) in FLAT {
        for entry in txn.open_multimap_table(def)?.iter()? {
            let (key, values) = entry?;
            for v in values {
                actual.insert((key_of(key.value().into()), v?.value()));
            }
        }
    }
    let mut out = crate::domain::index::differences(&expected, &actual);
    // the birth-first copy of the family-name index holds the same entries
    let family: BTreeSet<(IndexKey, u64)> = expected
        .into_iter()
        .filter(|(k, _)| matches!(k, IndexKey::Family(..)))
        .collect();
    let mut birth_first = BTreeSet::new();
    for entry in txn.open_multimap_table(BIRTH_FAMILY)?.iter()? {
        let (key, values) = entry?;
        let (birth, name) = key.value();
        for v in values {
            birth_first.insert((IndexKey::Family(name.into(), birth), v?.value()));
        }
    }
    out.extend(
        crate::domain::index::differences(&family, &birth_first)
            .into_iter()
            .map(|d| format!("{d} (birth-first family index)")),
    );
    Ok(out)
}

/// Fills the birth-first family index from the family index, once: a file written before it
/// existed has every entry to copy, a new one none. Idempotent (a flag in `meta`).
pub fn build_birth_first_once(
    indexes: &mut Indexes<'_>,
    meta: &mut redb::Table<'_, &'static str, &'static [u8]>,
) -> Result<(), StoreError> {
    if meta.get(BIRTH_FAMILY_BUILT)?.is_some() {
        return Ok(());
    }
    let mut copied = 0u64;
    for entry in indexes.family.iter()? {
        let (key, values) = entry?;
        let (name, birth) = key.value();
        for v in values {
            indexes.birth_family.insert((birth, name), v?.value())?;
            copied += 1;
        }
    }
    if copied > 0 {
        tracing::info!(entries = copied, "built the birth-first family-name index");
    }
    meta.insert(BIRTH_FAMILY_BUILT, [1u8].as_slice())?;
    Ok(())
}

fn parse_version(value: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
    let (json, _) = super::packing::unpack(value)?;
    serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt(e.to_string()))
}
