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

use crate::store::{RequestRecord, SavedResponse, StoreError};

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
    fn short_request_records_are_corrupt() {
        assert!(matches!(
            RequestCodec::from_bytes(&[0; 10]).into_record("r"),
            Err(StoreError::Corrupt(_))
        ));
    }
}
