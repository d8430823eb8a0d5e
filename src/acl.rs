//! The least-privilege ACL rules of a namespace: the keys and channels of
//! the namespace and the commands the library sends (directly, or inside
//! its scripts — Redis checks those too), nothing more.
//! `sandboxctl acl` prints them for
//! `redis-cli ACL SETUSER coord $(sandboxctl acl) '>secret'`. At start,
//! [`probe`] asks the server which of them the user lacks.

use crate::error::Error;
use crate::keys::Namespace;
use crate::redis::{Link, Route, value};
use crate::scripts::Scripts;

/// Commands the library sends itself (connections, scripts, the slot
/// registry, notifications, topology and `ASKING` redirects on Redis
/// Cluster). Not `CLIENT SETINFO`: redis-rs sends it on connect and ignores
/// a refusal, and Redis 7.0 does not know it (so `ACL SETUSER` would refuse
/// the whole rule list).
const CLIENT: &[&str] = &[
    "evalsha",
    "eval",
    "script|load",
    "ping",
    "wait",
    "hello",
    "subscribe",
    "unsubscribe",
    "ssubscribe",
    "sunsubscribe",
    "cluster|slots",
    "cluster|shards",
    "asking",
    "sadd",
    "set",
    "smembers",
];

/// Commands the scripts run.
const SCRIPTS: &[&str] = &[
    "time",
    "hmget",
    "hget",
    "hset",
    "hdel",
    "hgetall",
    "hexists",
    "exists",
    "del",
    "get",
    "pexpire",
    "persist",
    "pttl",
    "incr",
    "decr",
    "type",
    "zadd",
    "zrem",
    "zcard",
    "zcount",
    "zscore",
    "zrange",
    "zrangebyscore",
    "zrangebylex",
    "srem",
    "sismember",
    "publish",
    "spublish",
];

/// Each command above as `permissions.lua` checks it ("NAME|args", `$K` a
/// key of the namespace, `$C` a channel of it): the library's own calls
/// that touch keys or channels, and every command of the scripts.
pub(crate) const CHECKED: &[&str] = &[
    "EVALSHA|x|1|$K",
    "SUBSCRIBE|$C",
    "SSUBSCRIBE|$C",
    "SADD|$K|m",
    "SET|$K|v",
    "SMEMBERS|$K",
    "TIME",
    "HMGET|$K|f",
    "HGET|$K|f",
    "HSET|$K|f|v",
    "HDEL|$K|f",
    "HGETALL|$K",
    "HEXISTS|$K|f",
    "EXISTS|$K",
    "DEL|$K",
    "GET|$K",
    "PEXPIRE|$K|1",
    "PERSIST|$K",
    "PTTL|$K",
    "INCR|$K",
    "DECR|$K",
    "TYPE|$K",
    "ZADD|$K|1|m",
    "ZREM|$K|m",
    "ZCARD|$K",
    "ZCOUNT|$K|0|1",
    "ZSCORE|$K|m",
    "ZRANGE|$K|0|1",
    "ZRANGEBYSCORE|$K|0|1",
    "ZRANGEBYLEX|$K|-|+",
    "SREM|$K|m",
    "SISMEMBER|$K|m",
    "PUBLISH|$C|m",
    "SPUBLISH|$C|m",
];

/// What operator tools add: `repair` and `migrate` find records with
/// `SCAN`; `sandboxctl scripts --check` asks `SCRIPT EXISTS`; `watch`
/// without a team uses `PSUBSCRIBE`; `INFO` for server checks.
const ADMIN: &[&str] = &[
    "scan",
    "script|exists",
    "psubscribe",
    "punsubscribe",
    "info",
];

/// The ACL rules for `namespace`, space-separated: `resetkeys
/// resetchannels -@all` then the namespace's keys (`~<ns>:*`) and channels
/// (`&<ns>:*`) and the commands used. With `admin`, also what the operator
/// tools need. A namespace that is not one ([`validate_namespace`]: glob
/// characters would widen the patterns to other namespaces' keys, a space
/// would split a rule) is refused with [`Error::InvalidInput`].
///
/// [`validate_namespace`]: crate::keys::validate_namespace
pub fn acl_rules(namespace: &str, admin: bool) -> Result<String, Error> {
    crate::keys::validate_namespace(namespace)?;
    let mut rules = vec![
        "on".to_string(),
        "resetkeys".to_string(),
        "resetchannels".to_string(),
        "-@all".to_string(),
        format!("~{namespace}:*"),
        format!("&{namespace}:*"),
    ];
    let mut commands: Vec<&str> = CLIENT.iter().chain(SCRIPTS).copied().collect();
    if admin {
        commands.extend(ADMIN);
    }
    rules.extend(commands.into_iter().map(|c| format!("+{c}")));
    Ok(rules.join(" "))
}

/// Refuses a user whose ACL rules lack a command the library needs, naming
/// them (one script call at start; `sandboxctl acl` prints the rules).
pub(crate) async fn probe(link: &Link, scripts: &Scripts, ns: &Namespace) -> Result<(), Error> {
    let probe = ns.team_unchecked("~probe");
    let key = probe.key("probe");
    let channel = probe.channel();
    let mut args: Vec<&str> = vec![&channel];
    args.extend(CHECKED.iter().copied().filter(|c| {
        // One of the two publish commands is used, per deployment.
        let cluster = link.is_cluster();
        !(cluster && (c.starts_with("PUBLISH") || c.starts_with("SUBSCRIBE"))
            || !cluster && (c.starts_with("SPUBLISH") || c.starts_with("SSUBSCRIBE")))
    }));
    let (value, _) = link
        .run(
            &scripts.permissions,
            &[&key],
            &args,
            false,
            Route::default(),
        )
        .await?;
    let refused: Vec<String> = value::texts(value).into_iter().skip(1).collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(Error::NoPermission {
        detail: format!(
            "the user may not run {} on the namespace's keys or channels",
            refused.join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_the_namespace_and_no_dangerous_command() {
        let rules = acl_rules("sbx", false).unwrap();
        assert!(rules.contains("~sbx:* &sbx:*"));
        for bad in ["+flushall", "+@all", "+keys", "+scan", "+config"] {
            assert!(!rules.split(' ').any(|r| r == bad), "{bad}");
        }
        assert!(
            acl_rules("sbx", true)
                .unwrap()
                .split(' ')
                .any(|r| r == "+scan")
        );
    }

    /// Every command a script runs (`redis.call`/`redis.pcall` with a
    /// literal name) is granted and probed: a least-privilege user missing
    /// one would see NOPERM in the middle of a script.
    #[test]
    fn every_command_the_scripts_run_is_granted_and_probed() {
        let all = crate::scripts::assemble(
            &crate::lifecycle::Lifecycle::sandbox(),
            crate::scripts::ScriptOptions::default(),
        );
        for script in &all {
            for call in ["redis.call('", "redis.pcall('"] {
                for (at, _) in script.source().match_indices(call) {
                    let rest = &script.source()[at + call.len()..];
                    let name = &rest[..rest.find('\'').unwrap_or(0)];
                    let lower = name.to_ascii_lowercase();
                    assert!(
                        SCRIPTS.contains(&lower.as_str()) || CLIENT.contains(&lower.as_str()),
                        "{} runs {name}, which the rules do not grant",
                        script.name()
                    );
                    assert!(
                        CHECKED.iter().any(|c| c.split('|').next() == Some(name)),
                        "{} runs {name}, which the probe does not check",
                        script.name()
                    );
                }
            }
        }
    }

    /// `s*` would make the rules `~s*:*`: every namespace starting with s.
    #[test]
    fn acl_rules_refuse_a_namespace_with_glob_characters() {
        for ns in ["s*", "s?", "s[ab]", "s\\x", "s^", "a b", ""] {
            assert!(
                matches!(acl_rules(ns, false), Err(Error::InvalidInput { .. })),
                "{ns:?}"
            );
        }
    }
}
