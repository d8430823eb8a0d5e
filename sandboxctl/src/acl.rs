//! `acl`: the least-privilege ACL rules of a namespace, as the library
//! states them ([`sandbox_coordinator::acl_rules`]; sandboxctl adds none of
//! its own), on one line for `redis-cli ACL SETUSER coord $(sandboxctl acl)
//! '>secret'`. Needs no Redis.

use serde::Serialize;

use crate::output::Verdict;
use crate::output::{emit, emit_json};

/// The rules, as printed in JSON.
#[derive(Debug, Serialize)]
pub struct AclReport {
    pub namespace: String,
    /// Whether the operator commands' extra rules are included.
    pub admin: bool,
    /// Each rule, in `ACL SETUSER` order.
    pub rules: Vec<String>,
}

/// `sandboxctl acl [--admin]`.
pub fn acl(namespace: &str, admin: bool, json: bool) -> anyhow::Result<Verdict> {
    // The library refuses a namespace that would widen or split the
    // patterns (glob characters, spaces).
    let rules = sandbox_coordinator::acl_rules(namespace, admin)?;
    if json {
        emit_json(&AclReport {
            namespace: namespace.to_string(),
            admin,
            rules: rules.split(' ').map(str::to_string).collect(),
        })?;
    } else {
        emit(&format!("{rules}\n"))?;
    }
    Ok(Verdict::Done)
}
