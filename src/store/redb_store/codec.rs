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

use super::packing::Flags;
use crate::domain::Version;
use crate::store::{RequestRecord, SavedResponse, Staged, StoreError};

/// `patients` values: the current version's header, `[format u8][flags u8][version u32 LE]`
/// (format 2; see [`super::packing::Flags`] for the flags). The record itself is the newest
/// entry of `versions`, stored once. Format 1 also kept the record's JSON after the header;
/// such values are still read (the JSON is ignored: `versions` holds it too).
#[derive(Debug)]
pub struct HeadCodec;

/// A current record's header as the `patients` table holds it.
#[derive(Clone, Copy, Debug)]
pub struct Head {
    /// 0 when the stored bytes are not a header of a known format.
    version: u32,
    pub flags: Flags,
}

const HEAD_FORMAT_1: u8 = 1;
const HEAD_FORMAT_2: u8 = 2;

impl Head {
    /// The header a staged write stores.
    pub fn of(staged: &Staged) -> Head {
        Head {
            version: staged.version.get(),
            flags: Flags::of(staged),
        }
    }

    pub fn version(&self) -> Result<Version, StoreError> {
        Version::new(self.version).ok_or_else(|| StoreError::Corrupt("a record header".into()))
    }
}

impl Flags {
    pub fn of(staged: &Staged) -> Flags {
        Flags {
            restricted: staged.restricted,
            merged: staged.merged,
            invalidated: staged.invalidated,
        }
    }
}

impl Value for HeadCodec {
    type SelfType<'a> = Head;
    type AsBytes<'a> = [u8; 6];

    fn fixed_width() -> Option<usize> {
        None
    }

    fn from_bytes<'a>(data: &'a [u8]) -> Head
    where
        Self: 'a,
    {
        match data.split_first_chunk::<6>() {
            Some(([HEAD_FORMAT_1 | HEAD_FORMAT_2, flags, v @ ..], _)) => Head {
                version: u32::from_le_bytes(*v),
                flags: Flags::from_byte(*flags),
            },
            _ => Head {
                version: 0,
                flags: Flags::default(),
            },
        }
    }

    fn as_bytes<'a, 'b: 'a>(h: &'a Head) -> [u8; 6]
    where
        Self: 'b,
    {
        let v = h.version.to_le_bytes();
        [HEAD_FORMAT_2, h.flags.to_byte(), v[0], v[1], v[2], v[3]]
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
    fn headers_round_trip_format_1_reads_and_short_bytes_are_corrupt() {
        let staged = Staged {
            id: crate::domain::NhsNumber::parse("9000000009").unwrap(),
            version: Version::new(7).unwrap(),
            restricted: true,
            merged: false,
            invalidated: true,
            json: b"{}".to_vec(),
            keys: Vec::new(),
            packed: None,
        };
        let bytes = HeadCodec::as_bytes(&Head::of(&staged));
        assert_eq!(bytes, [2, 5, 7, 0, 0, 0]);
        for stored in [&bytes[..], &[1, 5, 7, 0, 0, 0, b'{', b'}'][..]] {
            let back = HeadCodec::from_bytes(stored);
            assert_eq!(back.version().unwrap().get(), 7);
            assert_eq!(back.flags, Flags::of(&staged));
        }
        assert!(matches!(
            HeadCodec::from_bytes(&[1, 0]).version(),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            RequestCodec::from_bytes(&[0; 10]).into_record("r"),
            Err(StoreError::Corrupt(_))
        ));
    }
}
