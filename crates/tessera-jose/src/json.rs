//! Strict JSON object parsing: rejects duplicate member names (RFC 7515 §5.2
//! permits rejecting; RFC 7519 §4 says claim names MUST be unique) and limits
//! nesting depth.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why strict parsing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonError {
    Syntax,
    NotObject,
    Duplicate,
    TooDeep,
}

/// Parses `bytes` as a JSON object, rejecting duplicate names at any level
/// and nesting deeper than `max_depth` (the top-level object is depth 1).
pub(crate) fn parse_object(
    bytes: &[u8],
    max_depth: usize,
) -> Result<Map<String, Value>, JsonError> {
    let flag = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = ValueSeed {
        depth: 0,
        max_depth,
        flag: &flag,
    };
    let value = seed
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|_| flag.get().unwrap_or(JsonError::Syntax))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(JsonError::NotObject),
    }
}

#[derive(Clone, Copy)]
struct ValueSeed<'a> {
    depth: usize,
    max_depth: usize,
    flag: &'a Cell<Option<JsonError>>,
}

impl ValueSeed<'_> {
    fn fail<E: de::Error>(&self, kind: JsonError) -> E {
        self.flag.set(Some(kind));
        E::custom(match kind {
            JsonError::Duplicate => "duplicate member name",
            JsonError::TooDeep => "nesting too deep",
            JsonError::NotObject | JsonError::Syntax => "invalid JSON",
        })
    }

    fn nested<E: de::Error>(&self) -> Result<Self, E> {
        if self.depth + 1 > self.max_depth {
            return Err(self.fail(JsonError::TooDeep));
        }
        Ok(ValueSeed {
            depth: self.depth + 1,
            ..*self
        })
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
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
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(inner)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(self.fail(JsonError::Duplicate));
            }
            let value = map.next_value_seed(inner)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_objects() {
        let m = parse_object(br#" {"a":1,"b":[1,{"c":null}],"d":1.5,"e":-3} "#, 16).unwrap();
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn rejects_duplicates_at_any_level() {
        assert_eq!(
            parse_object(br#"{"a":1,"a":2}"#, 16),
            Err(JsonError::Duplicate)
        );
        assert_eq!(
            parse_object(br#"{"x":{"a":1,"a":1}}"#, 16),
            Err(JsonError::Duplicate)
        );
        // Escaped spelling of the same name is still a duplicate.
        assert_eq!(
            parse_object(br#"{"a":1,"\u0061":2}"#, 16),
            Err(JsonError::Duplicate)
        );
    }

    #[test]
    fn rejects_non_objects_and_garbage() {
        assert_eq!(parse_object(b"[1]", 16), Err(JsonError::NotObject));
        assert_eq!(parse_object(b"\"a\"", 16), Err(JsonError::NotObject));
        assert_eq!(parse_object(b"{} x", 16), Err(JsonError::Syntax));
        assert_eq!(parse_object(b"{", 16), Err(JsonError::Syntax));
        assert_eq!(parse_object(b"\xef\xbb\xbf{}", 16), Err(JsonError::Syntax));
        assert_eq!(
            parse_object(br#"{"a":"\ud800"}"#, 16),
            Err(JsonError::Syntax)
        );
    }

    #[test]
    fn depth_limit() {
        assert!(parse_object(br#"{"a":{"b":[1]}}"#, 3).is_ok());
        assert_eq!(
            parse_object(br#"{"a":{"b":[1]}}"#, 2),
            Err(JsonError::TooDeep)
        );
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(500), "]".repeat(500));
        assert_eq!(parse_object(deep.as_bytes(), 16), Err(JsonError::TooDeep));
    }
}
