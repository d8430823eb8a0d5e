//! Key and channel names, hash slots, and the validation of every
//! identifier that goes into them.
//!
//! All keys of one team share the `{team}` hash tag, so every script
//! touches one hash slot and the layout works unchanged on Redis Cluster.
//! The keys that serve the whole namespace per slot (the slot's team set)
//! carry a tag chosen to hash to that slot, so a script may touch them
//! beside the team's keys:
//!
//! ```text
//! <ns>:{<team>}:rec:<id>          hash    the sandbox record (lease, queue and reservation are fields)
//! <ns>:{<team>}:out:<id>:<fence>  string  "<action> <outcome> <reason>", for the outcome retention
//! <ns>:{<team>}:expiry            zset    id -> end_ms of every record that is not a tombstone
//! <ns>:{<team>}:tombs             zset    id -> expiry time of every tombstone
//! <ns>:{<team>}:ids               zset    every record id, score 0 (pages by id)
//! <ns>:{<team>}:resv              zset    id -> deadline of every reservation
//! <ns>:{<team>}:team              hash    limit, floor, listed, tok:<id>
//! <ns>:{<team>}:notify            channel the team's wake-ups (SPUBLISH on Cluster)
//! <ns>:{<slot tag>}:teams         set     the teams with records whose {team} hashes to that slot
//! <ns>:{<slot tag>}:listed        string  "1" once the slot is in <ns>:slots
//! <ns>:slots                      set     the slots that have teams
//! ```

use std::sync::LazyLock;

use crate::error::Error;

/// The version of the layout above. Records carry it in their `v` field; a
/// server speaking another version gets [`Error::SchemaMismatch`] instead of
/// misreading the keys (schema 1 kept the lease in its own key and recent
/// outcomes in one hash; schema 2 kept the opaque data in one field, which
/// made a record with more than 64 bytes of it a `hashtable` rather than a
/// `listpack`; `sandboxctl migrate` converts both).
pub const SCHEMA_VERSION: &str = "3";

/// Longest team, sandbox, execution id or namespace, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Hash slots of Redis Cluster.
pub const SLOTS: u16 = 16384;

/// Checks a team id, sandbox id, execution id or namespace: 1 to 128 bytes,
/// no `{`, `}`, `:`, whitespace or control characters (they would break the
/// hash tag, the key structure or the space-separated fields).
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

/// Checks a namespace: an id (see [`validate_id`]) without the characters
/// a key pattern reads as a glob (`* ? [ ] \ ^`). The namespace goes into
/// the ACL rules' key and channel patterns (`~<ns>:*`) and the SCAN patterns
/// of the operator tools: `s*` would widen them to other namespaces' keys.
pub fn validate_namespace(value: &str) -> Result<(), Error> {
    validate_id("namespace", value)?;
    match value
        .chars()
        .find(|c| matches!(c, '*' | '?' | '[' | ']' | '\\' | '^'))
    {
        None => Ok(()),
        Some(c) => Err(Error::InvalidInput {
            what: "namespace",
            value: truncate(value),
            why: format!(
                "contains {c:?}, which a key pattern reads as a glob: the ACL rules would allow keys of other namespaces"
            ),
        }),
    }
}

pub(crate) fn truncate(value: &str) -> String {
    if value.len() <= 64 {
        return value.to_string();
    }
    let mut end = 64;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

/// CRC16/XMODEM, the checksum Redis Cluster maps keys to slots with.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash slot of a key, honouring `{hash tags}` like Redis does.
pub fn slot_of(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &bytes[open + 1..];
        rest.iter()
            .position(|&b| b == b'}')
            .filter(|&close| close > 0)
            .map(|close| &rest[..close])
    });
    crc16(tagged.unwrap_or(bytes)) % SLOTS
}

/// For each slot, a short tag that hashes to it (`#<n>` for the smallest
/// such n), found once.
static SLOT_TAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut tags: Vec<Option<String>> = vec![None; usize::from(SLOTS)];
    let mut missing = usize::from(SLOTS);
    let mut n: u64 = 0;
    while missing > 0 {
        let tag = format!("#{n}");
        let slot = usize::from(crc16(tag.as_bytes()) % SLOTS);
        if tags[slot].is_none() {
            tags[slot] = Some(tag);
            missing -= 1;
        }
        n += 1;
    }
    tags.into_iter().map(Option::unwrap_or_default).collect()
});

/// The tag of `slot` (see [`slot_of`]).
pub fn slot_tag(slot: u16) -> &'static str {
    &SLOT_TAGS[usize::from(slot % SLOTS)]
}

/// The namespace of one deployment: builds every key and channel name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    prefix: String,
}

impl Namespace {
    /// A namespace with a validated prefix (default `sbx`; see
    /// [`validate_namespace`]).
    pub fn new(prefix: &str) -> Result<Namespace, Error> {
        validate_namespace(prefix)?;
        Ok(Namespace {
            prefix: prefix.to_string(),
        })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The keys of a team, after validating its id.
    pub fn team(&self, team: &str) -> Result<TeamKeys, Error> {
        validate_id("team id", team)?;
        Ok(self.team_unchecked(team))
    }

    pub(crate) fn team_unchecked(&self, team: &str) -> TeamKeys {
        let prefix = format!("{}:{{{team}}}:", self.prefix);
        let slot = slot_of(&prefix);
        TeamKeys {
            prefix,
            slot,
            slot_prefix: format!("{}:{{{}}}:", self.prefix, slot_tag(slot)),
        }
    }

    /// The keys of one sandbox, after validating both ids.
    pub fn sandbox(&self, team: &str, id: &str) -> Result<SandboxKeys, Error> {
        let team_keys = self.team(team)?;
        validate_id("sandbox id", id)?;
        Ok(SandboxKeys {
            record: team_keys.record(id),
            team: team_keys,
        })
    }

    /// One sandbox as every call about it names it (both ids validated).
    pub(crate) fn sandbox_ref(&self, team: &str, id: &str) -> Result<SandboxRef, Error> {
        Ok(SandboxRef {
            keys: self.sandbox(team, id)?,
            team: team.to_string(),
            id: id.to_string(),
        })
    }

    /// The slot's team set (`<ns>:{<slot tag>}:teams`).
    pub fn slot_teams(&self, slot: u16) -> String {
        format!("{}:{{{}}}:teams", self.prefix, slot_tag(slot))
    }

    /// The registry of slots that have teams (`<ns>:slots`).
    pub fn slots(&self) -> String {
        format!("{}:slots", self.prefix)
    }

    /// The pattern of every record key of the namespace (for SCAN by
    /// operator tools: repair and migrate).
    pub fn record_pattern(&self) -> String {
        format!("{}:{{*}}:rec:*", self.prefix)
    }
}

/// The keys of one team, all in the team's hash slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamKeys {
    /// `<ns>:{<team>}:`, the prefix the scripts name the team's keys from.
    pub prefix: String,
    /// The team's hash slot.
    pub slot: u16,
    /// `<ns>:{<slot tag>}:`, the prefix of the slot's keys.
    pub slot_prefix: String,
}

impl TeamKeys {
    /// A key of the team: `<prefix><suffix>` (`expiry`, `ids`, `team`, ...).
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// The team's notification channel.
    pub fn channel(&self) -> String {
        self.key("notify")
    }

    /// `expiry`: id → end time of every record that is not a tombstone.
    pub fn expiry(&self) -> String {
        self.key("expiry")
    }

    /// `tombs`: id → when the tombstone expires.
    pub fn tombs(&self) -> String {
        self.key("tombs")
    }

    /// `ids`: every record id (pages by id).
    pub fn ids(&self) -> String {
        self.key("ids")
    }

    /// `resv`: id → reservation deadline.
    pub fn resv(&self) -> String {
        self.key("resv")
    }

    /// `team`: the team's hash (limit, floor, listed, reservation tokens).
    pub fn hash(&self) -> String {
        self.key("team")
    }

    /// `seq`: the team's change sequence.
    pub fn seq(&self) -> String {
        self.key("seq")
    }

    /// The record of sandbox `id` of the team (`rec:<id>`).
    pub fn record(&self, id: &str) -> String {
        format!("{}rec:{id}", self.prefix)
    }

    /// `lease:<id>`: schema 1's lease key of sandbox `id` (migrate only).
    pub fn lease_v1(&self, id: &str) -> String {
        format!("{}lease:{id}", self.prefix)
    }

    /// `fence`: schema 1's fence counter (read by migrate only).
    pub fn fence(&self) -> String {
        self.key("fence")
    }

    /// A key of the team's hash slot's own (`teams`, `listed`).
    pub fn slot_key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.slot_prefix)
    }

    /// The slot's team set (`<ns>:{<slot tag>}:teams`).
    pub fn slot_teams(&self) -> String {
        self.slot_key("teams")
    }

    /// The slot's listed flag (`<ns>:{<slot tag>}:listed`).
    pub fn slot_listed(&self) -> String {
        self.slot_key("listed")
    }
}

impl SandboxKeys {
    /// The outcome key of transition `fence` of this sandbox.
    pub fn outcome(&self, id: &str, fence: u64) -> String {
        format!("{}out:{id}:{fence}", self.team.prefix)
    }
}

/// One sandbox: its team, its id and its keys, named by methods. The one
/// identity a call, a transition, a reservation and the keeper's jobs
/// carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SandboxRef {
    pub team: String,
    pub id: String,
    pub keys: SandboxKeys,
}

impl SandboxRef {
    /// The record hash.
    pub(crate) fn record(&self) -> &str {
        &self.keys.record
    }

    /// The team's key prefix (the scripts' first argument).
    pub(crate) fn prefix(&self) -> &str {
        &self.keys.team.prefix
    }

    /// The outcome key of transition `fence`.
    pub(crate) fn outcome(&self, fence: u64) -> String {
        self.keys.outcome(&self.id, fence)
    }

    /// The KEYS of a script that takes the record out of every index
    /// (`remove.lua`, `sweep.lua`): the record, the team's `expiry`,
    /// `tombs`, `ids` and hash, the slot's team set, the team's `seq`.
    pub(crate) fn removal_keys(&self) -> Vec<String> {
        let team = &self.keys.team;
        vec![
            self.keys.record.clone(),
            team.expiry(),
            team.tombs(),
            team.ids(),
            team.hash(),
            team.slot_teams(),
            team.seq(),
        ]
    }
}

/// The keys one sandbox's scripts are called with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxKeys {
    /// The record hash.
    pub record: String,
    /// The team's keys.
    pub team: TeamKeys,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_team_hash_tag() {
        let ns = Namespace::new("sbx").unwrap();
        let k = ns.sandbox("team-1", "s1").unwrap();
        assert_eq!(k.record, "sbx:{team-1}:rec:s1");
        assert_eq!(k.team.key("expiry"), "sbx:{team-1}:expiry");
        assert_eq!(k.team.channel(), "sbx:{team-1}:notify");
        assert_eq!(slot_of(&k.record), slot_of("team-1"));
        assert_eq!(slot_of(&k.team.slot_prefix), k.team.slot);
    }

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.0.
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of("{user1000}.following"), slot_of("user1000"));
        assert_eq!(slot_of("a{}b"), slot_of("a{}b"));
        assert_eq!(slot_of("123456789"), 0x31c3 % SLOTS);
    }

    #[test]
    fn every_slot_has_a_tag_that_hashes_to_it() {
        for slot in 0..SLOTS {
            assert_eq!(slot_of(&format!("x:{{{}}}:y", slot_tag(slot))), slot);
        }
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
