//! Strict JSON for request bodies: like `serde_json`, but an object with the same key twice is
//! refused instead of silently keeping the last value (a client that sends
//! `{"op": "test", "op": "remove"}` must not get either one chosen for it). serde_json's
//! nesting limit (128) still applies.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate key '{}'",
                    crate::domain::outcome::clip(&key)
                )));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// Parses a request body; the error says what is wrong and where.
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice::<Strict>(bytes)
        .map(|s| s.0)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_parsing() {
        assert_eq!(
            parse(br#"{"a": [1, 2.5, "x", null, true, {"b": -1}]}"#).unwrap()["a"][5]["b"],
            -1
        );
        assert!(parse(br#"{"op": "test", "op": "remove"}"#)
            .unwrap_err()
            .contains("duplicate key 'op'"));
        assert!(parse(br#"{"a": {"b": 1, "b": 2}}"#).is_err());
        assert!(parse(b"{\"a\": \"\xff\"}").is_err(), "invalid UTF-8");
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(parse(deep.as_bytes())
            .unwrap_err()
            .contains("recursion limit"));
        assert!(parse(b"1e999").is_err());
    }
}
