//! The least-privilege ACL rules of a namespace: the keys and channels of
//! the namespace and the commands the library sends (directly, or inside
//! its scripts — Redis checks those too), nothing more.
//! `sandboxctl acl` prints them for
//! `redis-cli ACL SETUSER coord $(sandboxctl acl) '>secret'`.

/// Commands the library sends itself (connections, scripts, the slot
/// registry, notifications, topology on Redis Cluster).
const CLIENT: &[&str] = &[
    "evalsha",
    "eval",
    "script|load",
    "ping",
    "wait",
    "hello",
    "client|setinfo",
    "subscribe",
    "unsubscribe",
    "ssubscribe",
    "sunsubscribe",
    "cluster|slots",
    "cluster|shards",
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
/// tools need.
pub fn acl_rules(namespace: &str, admin: bool) -> String {
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
    rules.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_the_namespace_and_no_dangerous_command() {
        let rules = acl_rules("sbx", false);
        assert!(rules.contains("~sbx:* &sbx:*"));
        for bad in ["+flushall", "+@all", "+keys", "+scan", "+config"] {
            assert!(!rules.split(' ').any(|r| r == bad), "{bad}");
        }
        assert!(acl_rules("sbx", true).split(' ').any(|r| r == "+scan"));
    }
}
