//! How a record version's JSON is stored in `versions`: compressed, with the facts a read needs
//! before it parses anything.
//!
//! Layout of a `versions` value (store format 2):
//!
//! ```text
//! [codec u8 = 1][flags u8][uncompressed length u32 LE][LZ4 block, compressed against DICTIONARY_1]
//! ```
//!
//! * `flags` — restricted, merged, invalidated (the bits of [`Flags`]), so a GET can answer
//!   (or refuse) without parsing the record;
//! * the LZ4 block is compressed with an external dictionary: a few of this project's own demo
//!   records. A patient record is mostly the same long URLs, codes and keys, which LZ4 finds in
//!   the dictionary: a ~5.5 KB record stores in ~1.5 KB, so a change writes fewer pages and a
//!   database of 10 M rich records fits a disk that could not hold their JSON.
//!
//! A version written by a change carries the change's audit entry for that record, after the
//! record (codec 2), so that a change writes one row per record instead of a version and an
//! audit entry in two tables:
//!
//! ```text
//! [codec u8 = 2][flags u8][uncompressed length u32 LE][LZ4 block][audit entry JSON]
//!     [audit entry length u32 LE][audit sequence number u64 LE]
//! ```
//!
//! Store format 1 kept the JSON as it is (its first byte is `{`); such values are still read,
//! so a database from before opens as it is (`pds-facade migrate` rewrites it).
//!
//! The dictionary's bytes are part of the file format: they may never change. A better
//! dictionary comes as a new codec number beside this one (the test below pins its hash).

use std::borrow::Cow;

use crate::store::StoreError;

/// Codec 1's dictionary (never to change: see the module documentation).
const DICTIONARY_1: &[u8] = include_bytes!("dictionary.ndjson");
/// The codec numbers of a `versions` value's first byte.
const LZ4_DICTIONARY_1: u8 = 1;
/// Codec 1 followed by the version's audit entry.
const LZ4_DICTIONARY_1_AUDITED: u8 = 2;
/// The audit entry's length and sequence number, at the end of a codec-2 value.
const TRAILER: usize = 12;
/// A format-1 value: plain JSON, which always starts with `{`.
const PLAIN_JSON: u8 = b'{';

/// What a stored record header says about the record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub restricted: bool,
    pub merged: bool,
    pub invalidated: bool,
}

const RESTRICTED: u8 = 1;
const MERGED: u8 = 2;
const INVALIDATED: u8 = 4;

impl Flags {
    pub fn to_byte(self) -> u8 {
        [
            (self.restricted, RESTRICTED),
            (self.merged, MERGED),
            (self.invalidated, INVALIDATED),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |f, (_, bit)| f | bit)
    }

    /// The flags of a staged write.
    pub fn of(staged: &crate::store::Staged) -> Flags {
        Flags {
            restricted: staged.restricted,
            merged: staged.merged,
            invalidated: staged.invalidated,
        }
    }

    pub fn from_byte(b: u8) -> Flags {
        Flags {
            restricted: b & RESTRICTED != 0,
            merged: b & MERGED != 0,
            invalidated: b & INVALIDATED != 0,
        }
    }
}

/// A `versions` value for `json`.
pub fn pack(json: &[u8], flags: Flags) -> Vec<u8> {
    let len = u32::try_from(json.len()).expect("a record is far below 4 GiB");
    let bound = lz4_flex::block::get_maximum_output_size(json.len());
    let mut out = vec![0u8; 6 + bound];
    out[0] = LZ4_DICTIONARY_1;
    out[1] = flags.to_byte();
    out[2..6].copy_from_slice(&len.to_le_bytes());
    let n = lz4_flex::block::compress_into_with_dict(json, &mut out[6..], DICTIONARY_1)
        .expect("the output has the maximum compressed size");
    out.truncate(6 + n);
    out
}

/// `packed` (a codec-1 value) with the audit entry `audit` (JSON) numbered `seq`.
pub fn with_audit(mut packed: Vec<u8>, seq: u64, audit: &[u8]) -> Vec<u8> {
    debug_assert_eq!(packed.first(), Some(&LZ4_DICTIONARY_1));
    let len = u32::try_from(audit.len()).expect("an audit entry is far below 4 GiB");
    packed[0] = LZ4_DICTIONARY_1_AUDITED;
    packed.reserve(audit.len() + TRAILER);
    packed.extend_from_slice(audit);
    packed.extend_from_slice(&len.to_le_bytes());
    packed.extend_from_slice(&seq.to_le_bytes());
    packed
}

/// Whether a `versions` value is a compressed record without an audit entry (one
/// [`with_audit`] can take).
pub fn is_unaudited(bytes: &[u8]) -> bool {
    bytes.first() == Some(&LZ4_DICTIONARY_1)
}

/// The audit entry a `versions` value carries (its sequence number and JSON), if any.
pub fn audit_of(bytes: &[u8]) -> Result<Option<Audit<'_>>, StoreError> {
    match bytes.first() {
        Some(&LZ4_DICTIONARY_1_AUDITED) => split_audit(bytes).map(|(_, audit)| Some(audit)),
        _ => Ok(None),
    }
}

/// An audit entry as a version carries it: its sequence number and JSON.
pub type Audit<'a> = (u64, &'a [u8]);

/// A codec-2 value's record part (as codec 1) and its audit entry.
fn split_audit(bytes: &[u8]) -> Result<(&[u8], Audit<'_>), StoreError> {
    let corrupt = || StoreError::Corrupt("a stored record's audit entry".into());
    let end = bytes.len().checked_sub(TRAILER).ok_or_else(corrupt)?;
    let trailer = &bytes[end..];
    let len = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes")) as usize;
    let seq = u64::from_le_bytes(trailer[4..].try_into().expect("8 bytes"));
    let start = end
        .checked_sub(len)
        .filter(|s| *s >= 6)
        .ok_or_else(corrupt)?;
    Ok((&bytes[..start], (seq, &bytes[start..end])))
}

/// A `versions` value read back: the JSON, and the flags when the value holds them (a
/// format-1 value does not: the caller reads them from the record).
pub fn unpack(bytes: &[u8]) -> Result<(Cow<'_, [u8]>, Option<Flags>), StoreError> {
    match bytes.first() {
        Some(&PLAIN_JSON) => Ok((Cow::Borrowed(bytes), None)),
        Some(&LZ4_DICTIONARY_1_AUDITED) => decompress(split_audit(bytes)?.0),
        Some(&LZ4_DICTIONARY_1) => decompress(bytes),
        _ => Err(StoreError::Corrupt("a stored record's codec".into())),
    }
}

/// The record of a value laid out as codec 1 (the codec byte is not looked at).
fn decompress(bytes: &[u8]) -> Result<(Cow<'_, [u8]>, Option<Flags>), StoreError> {
    if bytes.len() < 6 {
        return Err(StoreError::Corrupt("a stored record's codec".into()));
    }
    let flags = Flags::from_byte(bytes[1]);
    let len = u32::from_le_bytes(bytes[2..6].try_into().expect("4 bytes")) as usize;
    // LZ4 expands at most 255-fold; a length beyond that is damage, not a record
    if len > bytes.len().saturating_mul(255) {
        return Err(StoreError::Corrupt("a stored record's length".into()));
    }
    let mut json = vec![0u8; len];
    let n = lz4_flex::block::decompress_into_with_dict(&bytes[6..], &mut json, DICTIONARY_1)
        .map_err(|e| StoreError::Corrupt(format!("a stored record: {e}")))?;
    if n != len {
        return Err(StoreError::Corrupt("a stored record's length".into()));
    }
    Ok((Cow::Owned(json), Some(flags)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn the_dictionary_never_changes() {
        // the bytes are part of the file format: every stored record was compressed against them
        let hash: [u8; 32] = Sha256::digest(DICTIONARY_1).into();
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "8caa2b39235a78021fd44a7bef29b8f97a6e823f0e3001480374664157e37331"
        );
    }

    #[test]
    fn records_round_trip_smaller_and_format_1_values_still_read() {
        let flags = Flags {
            restricted: true,
            merged: false,
            invalidated: true,
        };
        for i in [0u64, 1, 77, 4_000] {
            let json = serde_json::to_vec(&crate::generate::patient(3, i)).unwrap();
            let packed = pack(&json, flags);
            assert!(
                packed.len() * 2 < json.len(),
                "{} → {}",
                json.len(),
                packed.len()
            );
            let (back, f) = unpack(&packed).unwrap();
            assert_eq!(back.as_ref(), json.as_slice());
            assert_eq!(f, Some(flags));
            let (plain, none) = unpack(&json).unwrap();
            assert_eq!((plain.as_ref(), none), (json.as_slice(), None));
        }
        let json = serde_json::to_vec(&crate::generate::patient(3, 5)).unwrap();
        let audited = with_audit(pack(&json, flags), 99, br#"{"operation":"x"}"#);
        let (back, f) = unpack(&audited).unwrap();
        assert_eq!((back.as_ref(), f), (json.as_slice(), Some(flags)));
        assert_eq!(
            audit_of(&audited).unwrap(),
            Some((99, br#"{"operation":"x"}"#.as_slice()))
        );
        assert_eq!(audit_of(&pack(&json, flags)).unwrap(), None);
        for flags in [0u8, 1, 2, 4, 7] {
            assert_eq!(Flags::from_byte(flags).to_byte(), flags);
        }
    }

    #[test]
    fn damaged_values_are_corrupt_not_a_panic() {
        let json = serde_json::to_vec(&crate::generate::patient(3, 9)).unwrap();
        let packed = pack(&json, Flags::default());
        for bad in [
            &[][..],
            &[9, 0, 1, 0, 0, 0][..],
            &packed[..packed.len() / 2],
            &[1, 0, 255, 255, 0, 0, 0][..],
            &[2, 0, 1, 0, 0, 0, 9, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[2, 0, 0][..],
        ] {
            assert!(
                matches!(unpack(bad), Err(StoreError::Corrupt(_))),
                "{bad:?}"
            );
        }
        let mut wrong_length = packed.clone();
        wrong_length[2] = wrong_length[2].wrapping_add(1);
        assert!(unpack(&wrong_length).is_err());
    }
}
