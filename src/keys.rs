//! Key and channel names, and the validation of every identifier that goes
//! into them.
//!
//! All keys of one team share the `{team}` hash tag, so every script touches
//! one hash slot and the layout works unchanged on Redis Cluster:
//!
//! ```text
//! <ns>:{<team>}:rec:<id>     hash    the sandbox record
//! <ns>:{<team>}:lease:<id>   string  "<fence> <action> <holder>", PX TTL
//! <ns>:{<team>}:out:<id>     hash    fence -> "<action> <outcome> <reason>", newest 8
//! <ns>:{<team>}:expiry       zset    id -> end time (ms), live records only
//! <ns>:{<team>}:fence        string  the team's fence counter
//! <ns>:notify                channel "<team> <id> <fence> <action> <outcome> <reason>"
//! ```

use crate::error::Error;

/// The version of the layout above. Records carry it in their `v` field; a
/// server speaking another version gets [`Error::SchemaMismatch`] instead of
/// misreading the keys.
pub const SCHEMA_VERSION: &str = "1";

/// Longest team or sandbox id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Checks a team id, sandbox id, execution id or namespace: 1 to 128 bytes,
/// no `{`, `}`, `:`, whitespace or control characters (they would break the
/// hash tag, the key structure or the space-separated payloads).
pub fn validate_id(what: &'static str, value: &str) -> Result<(), Error> {
    let why = if value.is_empty() {
        Some("is empty".to_string())
    } else if value.len() > MAX_ID_LEN {
        Some(format!(
            "is {} bytes long; the limit is {MAX_ID_LEN}",
            value.len()
        ))
    } else {
        value
            .chars()
            .find(|c| matches!(c, '{' | '}' | ':') || c.is_whitespace() || c.is_control())
            .map(|c| {
                format!(
                    "contains {c:?}; ids may not contain {{ }} : whitespace or control characters"
                )
            })
    };
    match why {
        None => Ok(()),
        Some(why) => Err(Error::InvalidInput {
            what,
            value: truncate(value),
            why,
        }),
    }
}

fn truncate(value: &str) -> String {
    if value.len() <= 64 {
        return value.to_string();
    }
    let mut end = 64;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

/// The namespace of one deployment: builds every key and the channel name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    prefix: String,
}

impl Namespace {
    /// A namespace with a validated prefix (default `sbx`).
    pub fn new(prefix: &str) -> Result<Namespace, Error> {
        validate_id("namespace", prefix)?;
        Ok(Namespace {
            prefix: prefix.to_string(),
        })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The notification channel of this namespace.
    pub fn channel(&self) -> String {
        format!("{}:notify", self.prefix)
    }

    /// The expiry index of a team.
    pub fn expiry(&self, team: &str) -> String {
        format!("{}:{{{team}}}:expiry", self.prefix)
    }

    /// The fence counter of a team.
    pub fn fence_counter(&self, team: &str) -> String {
        format!("{}:{{{team}}}:fence", self.prefix)
    }

    /// The keys of one sandbox, after validating both ids.
    pub fn sandbox(&self, team: &str, id: &str) -> Result<SandboxKeys, Error> {
        validate_id("team id", team)?;
        validate_id("sandbox id", id)?;
        let base = format!("{}:{{{team}}}", self.prefix);
        Ok(SandboxKeys {
            record: format!("{base}:rec:{id}"),
            lease: format!("{base}:lease:{id}"),
            outcomes: format!("{base}:out:{id}"),
            expiry: format!("{base}:expiry"),
            fence: format!("{base}:fence"),
        })
    }
}

/// The keys one sandbox's scripts touch, all in the team's hash slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxKeys {
    /// The record hash.
    pub record: String,
    /// The lease string.
    pub lease: String,
    /// The recent-outcomes hash.
    pub outcomes: String,
    /// The team's expiry index.
    pub expiry: String,
    /// The team's fence counter.
    pub fence: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_team_hash_tag() {
        let ns = Namespace::new("sbx").unwrap();
        let k = ns.sandbox("team-1", "s1").unwrap();
        assert_eq!(k.record, "sbx:{team-1}:rec:s1");
        assert_eq!(k.lease, "sbx:{team-1}:lease:s1");
        assert_eq!(k.outcomes, "sbx:{team-1}:out:s1");
        assert_eq!(k.expiry, "sbx:{team-1}:expiry");
        assert_eq!(k.fence, "sbx:{team-1}:fence");
        assert_eq!(ns.channel(), "sbx:notify");
    }

    #[test]
    fn bad_ids_are_refused_with_a_reason() {
        let long = "x".repeat(MAX_ID_LEN + 1);
        for bad in [
            "", "a b", "a{b", "a}b", "a:b", "a\tb", "a\nb", "a\u{0}b", &long,
        ] {
            let err = validate_id("sandbox id", bad).unwrap_err();
            assert!(matches!(err, Error::InvalidInput { .. }), "{bad:?}: {err}");
        }
        assert!(validate_id("sandbox id", &"x".repeat(MAX_ID_LEN)).is_ok());
        assert!(validate_id("sandbox id", "sbx-01_ü.é").is_ok());
    }
}
