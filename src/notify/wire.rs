//! The notice format, as `lua/include/outcome.lua` and
//! `lua/include/notify.lua` publish it on `<ns>:{<team>}:notify`:
//! `"o <id> <fence> <action> <outcome> <reason>"` (an outcome),
//! `"c <id>"` or `"c"` (a change), optionally after a team view's
//! announcement line `"=<seq> ...\n"`.

use crate::lifecycle::Outcome;

/// A published event for one sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// Transition `fence` ended.
    Ended {
        fence: u64,
        action: String,
        outcome: Outcome,
        reason: String,
    },
    /// The record changed for its waiters (queue head, resume, removal,
    /// reservation).
    Changed,
}

/// Parses `"o <id> <fence> <action> <outcome> <reason>"`, `"c <id>"`, `"c"`
/// (after a team view's announcement `"=<seq> ...\n"`, if any).
pub(super) fn parse(payload: &str) -> Option<(Option<String>, Notice)> {
    let payload = match payload.strip_prefix('=') {
        Some(view) => view.split_once('\n')?.1,
        None => payload,
    };
    let mut parts = payload.splitn(6, ' ');
    match parts.next()? {
        "o" => {
            let id = parts.next()?.to_string();
            let fence = parts.next()?.parse().ok()?;
            let action = parts.next()?.to_string();
            let outcome = parts.next()?.parse().ok()?;
            let reason = parts.next().unwrap_or("").to_string();
            Some((
                Some(id),
                Notice::Ended {
                    fence,
                    action,
                    outcome,
                    reason,
                },
            ))
        }
        "c" => Some((parts.next().map(str::to_string), Notice::Changed)),
        _ => None,
    }
}

/// The team of a channel `<ns>:{<team>}:notify`.
pub(super) fn channel_team(channel: &str) -> Option<&str> {
    let open = channel.find('{')?;
    let close = channel[open..].find('}')? + open;
    Some(&channel[open + 1..close])
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn payloads_parse_with_spaces_in_the_reason() {
        let (id, n) = parse("o s1 42 pause failed disk full: no space").unwrap();
        assert_eq!(id.as_deref(), Some("s1"));
        assert_eq!(
            n,
            Notice::Ended {
                fence: 42,
                action: "pause".into(),
                outcome: Outcome::Failed,
                reason: "disk full: no space".into()
            }
        );
        let (_, n) = parse("o s1 7 kill succeeded ").unwrap();
        assert!(matches!(n, Notice::Ended { reason, .. } if reason.is_empty()));
        assert_eq!(parse("c s1"), Some((Some("s1".into()), Notice::Changed)));
        assert_eq!(parse("c"), Some((None, Notice::Changed)));
        assert!(parse("o s1 x kill succeeded").is_none());
        assert!(parse("o s1 7 kill exploded").is_none());
        assert!(parse("z s1").is_none());
        assert_eq!(
            parse("=7 x s1\nc s1"),
            Some((Some("s1".into()), Notice::Changed))
        );
        assert!(parse("=7 s s1 running e1 0 5 - - - - -").is_none());
    }

    #[test]
    fn channels_name_their_team() {
        assert_eq!(channel_team("sbx:{team-1}:notify"), Some("team-1"));
        assert_eq!(channel_team("sbx:notify"), None);
    }
}
