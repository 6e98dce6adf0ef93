//! The layouts of the values whose encoding is this program's own, as redb value types: a
//! table is declared with its codec, and reads and writes go through it — nowhere else knows a
//! byte offset.
//!
//! Every codec is stored as a byte string (it declares the type name of `&[u8]`), which is how
//! these tables were declared before the codecs existed: a database written then opens as it is.

use std::borrow::Cow;
use std::fmt::Debug;
use std::marker::PhantomData;

use redb::{TypeName, Value};
use serde::{de::DeserializeOwned, Serialize};

use crate::domain::Version;
use crate::store::{RequestRecord, SavedResponse, Staged, StoreError, StoredRecord};

/// `patients` values: `[format u8 = 1][flags u8][version u32 LE][the record's JSON]` — the
/// header lets a GET answer with the version, the flags and the bytes without parsing JSON.
#[derive(Debug)]
pub struct RecordCodec;

/// A current record as the `patients` table holds it.
#[derive(Clone, Debug)]
pub struct Record<'a> {
    /// 0 when the stored bytes are not a record of this format.
    version: u32,
    flags: u8,
    json: Cow<'a, [u8]>,
}

const RECORD_FORMAT: u8 = 1;
const RESTRICTED: u8 = 1;
const MERGED: u8 = 2;
const INVALIDATED: u8 = 4;

impl<'a> Record<'a> {
    /// The record a staged write stores.
    pub fn of(staged: &'a Staged) -> Record<'a> {
        let flags = [
            (staged.restricted, RESTRICTED),
            (staged.merged, MERGED),
            (staged.invalidated, INVALIDATED),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |f, (_, bit)| f | bit);
        Record {
            version: staged.version.get(),
            flags,
            json: Cow::Borrowed(&staged.json),
        }
    }

    pub fn version(&self) -> Result<Version, StoreError> {
        Version::new(self.version).ok_or_else(|| StoreError::Corrupt("a record header".into()))
    }

    pub fn into_stored(self) -> Result<StoredRecord, StoreError> {
        Ok(StoredRecord {
            version: self.version()?,
            restricted: self.flags & RESTRICTED != 0,
            merged: self.flags & MERGED != 0,
            invalidated: self.flags & INVALIDATED != 0,
            json: self.json.into_owned(),
        })
    }
}

impl Value for RecordCodec {
    type SelfType<'a> = Record<'a>;
    type AsBytes<'a> = Vec<u8>;

    fn fixed_width() -> Option<usize> {
        None
    }

    fn from_bytes<'a>(data: &'a [u8]) -> Record<'a>
    where
        Self: 'a,
    {
        match data.split_first_chunk::<6>() {
            Some(([RECORD_FORMAT, flags, v @ ..], json)) => Record {
                version: u32::from_le_bytes(*v),
                flags: *flags,
                json: Cow::Borrowed(json),
            },
            _ => Record {
                version: 0,
                flags: 0,
                json: Cow::Borrowed(&[]),
            },
        }
    }

    fn as_bytes<'a, 'b: 'a>(r: &'a Record<'b>) -> Vec<u8>
    where
        Self: 'b,
    {
        let mut out = Vec::with_capacity(6 + r.json.len());
        out.push(RECORD_FORMAT);
        out.push(r.flags);
        out.extend_from_slice(&r.version.to_le_bytes());
        out.extend_from_slice(&r.json);
        out
    }

    fn type_name() -> TypeName {
        <&[u8] as Value>::type_name()
    }
}

/// `requests` values: `[fingerprint 32 bytes][saved_at u64 LE][saved response JSON]`.
#[derive(Debug)]
pub struct RequestCodec;

/// An idempotency record as the `requests` table holds it (its id is the key).
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// `None` when the stored bytes are not a request record.
    head: Option<([u8; 32], u64)>,
    response: Cow<'a, [u8]>,
}

impl Request<'_> {
    pub fn of(r: &RequestRecord) -> Request<'static> {
        Request {
            head: Some((r.fingerprint, r.saved_at)),
            response: Cow::Owned(serde_json::to_vec(&r.response).expect("JSON")),
        }
    }

    pub fn saved_at(&self) -> Result<u64, StoreError> {
        self.head
            .map(|(_, at)| at)
            .ok_or_else(|| StoreError::Corrupt("a request record".into()))
    }

    pub fn into_record(self, request_id: &str) -> Result<RequestRecord, StoreError> {
        let (fingerprint, saved_at) = self
            .head
            .ok_or_else(|| StoreError::Corrupt("a request record".into()))?;
        let response: SavedResponse = serde_json::from_slice(&self.response)
            .map_err(|e| StoreError::Corrupt(format!("a saved response: {e}")))?;
        Ok(RequestRecord {
            request_id: request_id.to_string(),
            fingerprint,
            saved_at,
            response,
        })
    }
}

impl Value for RequestCodec {
    type SelfType<'a> = Request<'a>;
    type AsBytes<'a> = Vec<u8>;

    fn fixed_width() -> Option<usize> {
        None
    }

    fn from_bytes<'a>(data: &'a [u8]) -> Request<'a>
    where
        Self: 'a,
    {
        match data.split_first_chunk::<40>() {
            Some((head, response)) => {
                let (fingerprint, at) = head.split_at(32);
                Request {
                    head: Some((
                        fingerprint.try_into().expect("32 bytes"),
                        u64::from_le_bytes(at.try_into().expect("8 bytes")),
                    )),
                    response: Cow::Borrowed(response),
                }
            }
            None => Request {
                head: None,
                response: Cow::Borrowed(&[]),
            },
        }
    }

    fn as_bytes<'a, 'b: 'a>(r: &'a Request<'b>) -> Vec<u8>
    where
        Self: 'b,
    {
        let (fingerprint, at) = r.head.expect("only whole records are written");
        let mut out = Vec::with_capacity(40 + r.response.len());
        out.extend_from_slice(&fingerprint);
        out.extend_from_slice(&at.to_le_bytes());
        out.extend_from_slice(&r.response);
        out
    }

    fn type_name() -> TypeName {
        <&[u8] as Value>::type_name()
    }
}

/// A value stored as JSON (audit entries); reading bytes that are not one gives `Err`.
#[derive(Debug)]
pub struct JsonCodec<T>(PhantomData<T>);

impl<T: Serialize + DeserializeOwned + Debug> Value for JsonCodec<T> {
    type SelfType<'a>
        = Result<T, String>
    where
        Self: 'a;
    type AsBytes<'a>
        = Vec<u8>
    where
        Self: 'a;

    fn fixed_width() -> Option<usize> {
        None
    }

    fn from_bytes<'a>(data: &'a [u8]) -> Result<T, String>
    where
        Self: 'a,
    {
        serde_json::from_slice(data).map_err(|e| e.to_string())
    }

    fn as_bytes<'a, 'b: 'a>(v: &'a Result<T, String>) -> Vec<u8>
    where
        Self: 'b,
    {
        serde_json::to_vec(v.as_ref().expect("only values are written")).expect("JSON")
    }

    fn type_name() -> TypeName {
        <&[u8] as Value>::type_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_short_bytes_are_corrupt() {
        let staged = Staged {
            id: crate::domain::NhsNumber::parse("9000000009").unwrap(),
            version: Version::new(7).unwrap(),
            restricted: true,
            merged: false,
            invalidated: true,
            json: b"{}".to_vec(),
            keys: Vec::new(),
        };
        let bytes = RecordCodec::as_bytes(&Record::of(&staged));
        assert_eq!(bytes, [1, 5, 7, 0, 0, 0, b'{', b'}']);
        let back = RecordCodec::from_bytes(&bytes).into_stored().unwrap();
        assert_eq!(
            (
                back.version.get(),
                back.restricted,
                back.merged,
                back.invalidated
            ),
            (7, true, false, true)
        );
        assert!(matches!(
            RecordCodec::from_bytes(&[1, 0]).into_stored(),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            RequestCodec::from_bytes(&[0; 10]).into_record("r"),
            Err(StoreError::Corrupt(_))
        ));
    }
}
