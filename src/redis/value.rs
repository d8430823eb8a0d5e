//! Replies typed at the edge: the one place where a raw [`redis::Value`]
//! becomes text or a number. Everything above reads typed values: a
//! script's reply through `ops::Reply` (built on these), a set's members
//! as `Vec<String>`, a `SCAN` page as keys and a cursor.
//!
//! Text is read leniently where the value is only shown or matched
//! against names the library wrote ([`text`]: invalid UTF-8 is replaced),
//! and strictly where it is parsed as a field ([`as_str`]: invalid UTF-8
//! reads as no text, so that a damaged field is refused, never guessed).

use redis::Value;

/// A reply as text: a bulk string (invalid UTF-8 replaced), a status, `OK`,
/// or an integer's digits; `None` for anything else (nil, an array, ...).
pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".into()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// [`text`], or "" for a value that is not text.
pub(crate) fn text_or_empty(v: &Value) -> String {
    text(v).unwrap_or_default()
}

/// A reply as borrowed text, strictly: a bulk string that is valid UTF-8,
/// a status, or `OK`; `None` for anything else (an integer too: read it
/// with [`int`]).
pub(crate) fn as_str(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        Value::Okay => Some("OK"),
        _ => None,
    }
}

/// A bulk string's bytes; `None` for anything else.
pub(crate) fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        _ => None,
    }
}

/// A reply as an integer: an integer reply, or text holding one.
pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        other => as_str(other)?.parse().ok(),
    }
}

/// A reply as a non-negative integer: an integer reply, or text holding
/// one (up to 2^64 - 1).
pub(crate) fn uint(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => as_str(other)?.parse().ok(),
    }
}

/// Every text of a reply, flattened: an array's or a set's items, a map's
/// values (a set's members, `SMEMBERS`, under RESP2 and RESP3 alike).
pub(crate) fn texts(v: Value) -> Vec<String> {
    match v {
        Value::Array(items) | Value::Set(items) => items.into_iter().flat_map(texts).collect(),
        Value::Map(pairs) => pairs.into_iter().flat_map(|(_, v)| texts(v)).collect(),
        other => text(&other).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_reads_every_kind_of_word() {
        assert_eq!(
            text(&Value::BulkString(b"a b".to_vec())).as_deref(),
            Some("a b")
        );
        assert_eq!(text(&Value::SimpleString("s".into())).as_deref(), Some("s"));
        assert_eq!(text(&Value::Okay).as_deref(), Some("OK"));
        assert_eq!(text(&Value::Int(-7)).as_deref(), Some("-7"));
        assert_eq!(text(&Value::Nil), None);
        assert_eq!(
            text(&Value::BulkString(vec![0xff])).as_deref(),
            Some("\u{fffd}")
        );
    }

    #[test]
    fn strict_text_refuses_invalid_utf8_and_numbers() {
        assert_eq!(as_str(&Value::BulkString(vec![0xff])), None);
        assert_eq!(as_str(&Value::Int(1)), None);
        assert_eq!(int(&Value::BulkString(b"42".to_vec())), Some(42));
        assert_eq!(int(&Value::Int(42)), Some(42));
        assert_eq!(int(&Value::BulkString(b"x".to_vec())), None);
        assert_eq!(uint(&Value::Int(-1)), None);
        assert_eq!(
            uint(&Value::BulkString(b"18446744073709551615".to_vec())),
            Some(u64::MAX)
        );
    }

    #[test]
    fn texts_flatten_arrays_sets_and_maps() {
        let v = Value::Array(vec![
            Value::BulkString(b"a".to_vec()),
            Value::Set(vec![Value::SimpleString("b".into())]),
            Value::Map(vec![(Value::Nil, Value::BulkString(b"c".to_vec()))]),
            Value::Nil,
        ]);
        assert_eq!(texts(v), ["a", "b", "c"]);
    }
}
