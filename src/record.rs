//! The sandbox record as stored (schema 3), and its validation: the same
//! rules as `lua/include/record.lua`, which every script runs before its
//! first write. A record either side refuses is refused by both
//! (`tests/record_validation.rs` feeds the same corrupt values to each).

use std::time::{Duration, UNIX_EPOCH};

use crate::error::Error;
use crate::lifecycle::{Action, Lifecycle, Outcome, State, StateClass};
use crate::sandbox::{LastTransition, Lease, Sandbox};

/// The record's fields in the order `record.lua` reads and replies them.
pub(crate) const FIELDS: [&str; 17] = [
    "v",
    "lc",
    "state",
    "exec",
    "end_ms",
    "fence",
    "action",
    "holder",
    "until_ms",
    "started_ms",
    "last_fence",
    "last_action",
    "last_outcome",
    "last_reason",
    "queue",
    "resv",
    "floor",
];

/// 2^53 - 1: the largest integer a Lua number (a double) holds exactly,
/// hence the largest value of every numeric field and argument.
pub const MAX_INT: u64 = (1 << 53) - 1;

/// The integer `s` spells, if it is a plain decimal in `0..=MAX_INT` (no
/// sign, exponent, hex or `nan`: what Lua's `tonumber` would also accept is
/// refused on both sides).
pub(crate) fn uint(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n| *n <= MAX_INT)
}

/// Lua's `%s`: the ASCII whitespace bytes (what `record.lua` refuses in a word).
fn lua_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// `"holder@deadline"`: the word and the deadline.
fn stamp(s: &str) -> Option<(&str, u64)> {
    let (h, d) = s.split_once('@')?;
    if h.is_empty() || h.contains(|c: char| c == '@' || lua_space(c)) {
        return None;
    }
    if !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((h, uint(d)?))
}

/// The queued waiters of a record, or None if the field is malformed.
fn queue(s: &str) -> Option<Vec<(&str, u64)>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split(' ').map(stamp).collect()
}

/// The number of the data piece a record field holds (`data` is 1,
/// `data:2` 2, …), or None for another field.
pub(crate) fn data_piece(field: &str) -> Option<usize> {
    match field.strip_prefix("data") {
        Some("") => Some(1),
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .filter(|n| *n >= 2),
        None => None,
    }
}

/// The caller's data from a record's pieces ((number, bytes), in any
/// order), joined by `data.lua`'s rule: pieces 1, 2, … while each is
/// present, ending at the first shorter than [`DATA_PIECE`] bytes. Bytes,
/// not text, are joined: a piece may end inside a character.
pub(crate) fn join_data<'a>(pieces: impl IntoIterator<Item = (usize, &'a [u8])>) -> String {
    let mut pieces: Vec<(usize, &[u8])> = pieces.into_iter().collect();
    pieces.sort_unstable_by_key(|(n, _)| *n);
    let mut data = Vec::new();
    for (want, (n, piece)) in (1..).zip(pieces) {
        if n != want {
            break;
        }
        data.extend_from_slice(piece);
        if piece.len() < DATA_PIECE {
            break;
        }
    }
    String::from_utf8_lossy(&data).into_owned()
}

/// The longest piece of data a record field holds (`data.lua`): Redis's
/// default `hash-max-listpack-value`, so the record stays a listpack.
pub(crate) const DATA_PIECE: usize = 64;

/// The fields of one record as replied by `inspect.lua` / `register.lua`, or
/// read by `list` with `HGETALL`.
pub(crate) struct Raw<'a> {
    pub fields: [&'a str; 17],
}

impl<'a> Raw<'a> {
    fn get(&self, name: &str) -> &'a str {
        let i = FIELDS.iter().position(|f| *f == name).unwrap_or(0);
        self.fields[i]
    }

    /// What is wrong with the record, with `record.lua`'s wording, or None.
    pub(crate) fn refusal(&self, lifecycle: &Lifecycle) -> Option<String> {
        let f = |n| self.get(n);
        let Ok(state) = f("state").parse::<State>() else {
            return Some(format!("unknown state \"{}\"", f("state")));
        };
        if f("exec").is_empty() {
            return Some("no execution id".into());
        }
        if uint(f("end_ms")).is_none() {
            return Some(format!("end_ms \"{}\" is not an integer", f("end_ms")));
        }
        if uint(f("fence")).is_none() {
            return Some(format!("fence \"{}\" is not an integer", f("fence")));
        }
        if !f("action").is_empty() && f("action").parse::<Action>().is_err() {
            return Some(format!("unknown action \"{}\"", f("action")));
        }
        if f("holder").is_empty() {
            if !f("until_ms").is_empty() {
                return Some("until_ms without a holder".into());
            }
        } else {
            if f("holder").contains(|c: char| c == '@' || lua_space(c)) {
                return Some(format!("holder \"{}\" is not a word", f("holder")));
            }
            if uint(f("until_ms")).is_none() {
                return Some(format!("until_ms \"{}\" is not an integer", f("until_ms")));
            }
            if !matches!(lifecycle.class(state), StateClass::InFlight(_)) {
                return Some(format!("a holder on settled state {state}"));
            }
        }
        if !f("started_ms").is_empty() && uint(f("started_ms")).is_none() {
            return Some("started_ms is not an integer".into());
        }
        if f("last_fence").is_empty() {
            if !f("last_action").is_empty() || !f("last_outcome").is_empty() {
                return Some("last_action or last_outcome without last_fence".into());
            }
        } else {
            if uint(f("last_fence")).is_none() {
                return Some(format!(
                    "last_fence \"{}\" is not an integer",
                    f("last_fence")
                ));
            }
            if f("last_action").parse::<Action>().is_err() {
                return Some(format!("unknown last_action \"{}\"", f("last_action")));
            }
            if f("last_outcome").parse::<Outcome>().is_err() {
                return Some(format!("unknown last_outcome \"{}\"", f("last_outcome")));
            }
        }
        if queue(f("queue")).is_none() {
            return Some(format!(
                "queue \"{}\" is not \"holder@deadline ...\"",
                f("queue")
            ));
        }
        if !f("resv").is_empty() && stamp(f("resv")).is_none() {
            return Some(format!("resv \"{}\" is not \"token@deadline\"", f("resv")));
        }
        if !f("floor").is_empty() && uint(f("floor")).is_none() {
            return Some(format!("floor \"{}\" is not an integer", f("floor")));
        }
        if f("lc").is_empty() {
            return Some("no lifecycle digest".into());
        }
        None
    }

    /// The record as callers read it, validated exactly like the scripts do.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn to_sandbox(
        &self,
        lifecycle: &Lifecycle,
        key: &str,
        team: &str,
        id: &str,
        now_ms: u64,
        pttl: i64,
        data: &str,
    ) -> Result<Sandbox, Error> {
        let corrupt = |why: String| Error::Corrupt {
            detail: format!("{key}: {why}"),
        };
        if self.get("v") != crate::keys::SCHEMA_VERSION {
            return Err(Error::SchemaMismatch {
                key: key.to_string(),
                found: self.get("v").to_string(),
                expected: crate::keys::SCHEMA_VERSION,
            });
        }
        if let Some(why) = self.refusal(lifecycle) {
            return Err(corrupt(why));
        }
        let f = |n| self.get(n);
        let num = |n| uint(f(n)).unwrap_or(0);
        let state: State = f("state").parse().map_err(corrupt)?;
        let until = num("until_ms");
        let started = uint(f("started_ms")).unwrap_or(now_ms);
        let lease = if !f("holder").is_empty() && until > now_ms {
            Some(Lease {
                fence: num("fence"),
                action: f("action").parse().map_err(corrupt)?,
                holder: f("holder").to_string(),
                ttl: Duration::from_millis(until - now_ms),
                age: Duration::from_millis(now_ms.saturating_sub(started)),
            })
        } else {
            None
        };
        let last = if f("last_fence").is_empty() {
            None
        } else {
            Some(LastTransition {
                fence: num("last_fence"),
                action: f("last_action").parse().map_err(corrupt)?,
                outcome: f("last_outcome").parse().map_err(corrupt)?,
                reason: f("last_reason").to_string(),
            })
        };
        let waiting = queue(f("queue"))
            .unwrap_or_default()
            .iter()
            .filter(|(_, deadline)| *deadline > now_ms)
            .count();
        let reserved = stamp(f("resv"))
            .map(|(_, deadline)| deadline)
            .filter(|deadline| *deadline > now_ms)
            .map(|deadline| Duration::from_millis(deadline - now_ms));
        Ok(Sandbox {
            team: team.to_string(),
            id: id.to_string(),
            execution: f("exec").to_string(),
            state,
            end_time: UNIX_EPOCH + Duration::from_millis(num("end_ms")),
            fence: num("fence"),
            data: data.to_string(),
            lease,
            last,
            waiting,
            reserved,
            expires_in: u64::try_from(pttl).ok().map(Duration::from_millis),
            lifecycle: f("lc").to_string(),
        })
    }
}

/// What the scripts' validation would say of a record with these fields
/// (absent ones read as ""), by the Rust twin of `record.lua`. Hidden: for
/// the test that keeps the two equal.
#[doc(hidden)]
pub fn refusal(lifecycle: &Lifecycle, fields: &[(&str, &str)]) -> Option<String> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(f, _)| *f == name)
            .map_or("", |(_, v)| *v)
    };
    let raw = Raw {
        fields: std::array::from_fn(|i| get(FIELDS[i])),
    };
    raw.refusal(lifecycle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_pieces_are_named_data_then_data_colon_n() {
        assert_eq!(data_piece("data"), Some(1));
        assert_eq!(data_piece("data:2"), Some(2));
        assert_eq!(data_piece("data:17"), Some(17));
        for other in ["data:1", "data:0", "data:", "data:x", "datum", "v", "data2"] {
            assert_eq!(data_piece(other), None, "{other}");
        }
    }

    #[test]
    fn data_is_joined_in_piece_order_up_to_the_first_short_piece() {
        let full = [b'a'; DATA_PIECE];
        let full: &[u8] = &full;
        assert_eq!(join_data([]), "");
        assert_eq!(join_data([(1, &b"abc"[..])]), "abc");
        // Out of order, as HGETALL of a hashtable gives them.
        let joined = join_data([(3, &b"z"[..]), (1, full), (2, full)]);
        assert_eq!(joined.len(), 2 * DATA_PIECE + 1);
        assert!(joined.ends_with('z'));
        // A short piece is the last: what follows it is not data.
        assert_eq!(join_data([(1, &b"ab"[..]), (2, &b"cd"[..])]), "ab");
        // A missing piece ends the data.
        assert_eq!(join_data([(1, full), (3, &b"cd"[..])]).len(), DATA_PIECE);
        // A character cut between two pieces comes back whole.
        let text = format!("{}é", "x".repeat(DATA_PIECE - 1));
        let (one, two) = text.as_bytes().split_at(DATA_PIECE);
        assert_eq!(join_data([(1, one), (2, two)]), text);
    }

    #[test]
    fn integers_are_plain_decimals_that_a_double_holds() {
        assert_eq!(uint("0"), Some(0));
        assert_eq!(uint("9007199254740991"), Some(MAX_INT));
        for bad in [
            "",
            "-5",
            "+5",
            "1e12",
            "0x10",
            "nan",
            "inf",
            " 1",
            "1.0",
            "9007199254740992",
            "12345678901234567",
        ] {
            assert_eq!(uint(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn queues_and_stamps_need_a_word_and_a_deadline() {
        assert_eq!(queue(""), Some(vec![]));
        assert_eq!(queue("a/1@5 b/2@6"), Some(vec![("a/1", 5), ("b/2", 6)]));
        for bad in ["a", "@5", "a@", "a@x", "a@5  b@6", "a@5 ", "a@b@5", "a@-1"] {
            assert_eq!(queue(bad), None, "{bad:?}");
        }
    }
}
