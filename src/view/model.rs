//! The pure part of a team view (no I/O): the announcements the scripts
//! publish (`lua/include/notify.lua`), parsed once; the model of one team
//! they are applied to, in sequence order; and the assembly of a model from
//! a paged snapshot plus the announcements received while it was read.
//!
//! Every change carries the full state of what it names (a record as it is
//! now, a reservation's deadline, the limit), never a delta: applying the
//! announcements after sequence `s` in order, over a state read at `s` or
//! later, ends in the latest state. That is what lets a snapshot be read
//! page by page (each page atomic, at its own sequence) instead of in one
//! script that would block the shard for a whole team.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::lifecycle::{Action, State};

/// A sandbox as a team view holds it: what the scripts announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewedSandbox {
    /// Sandbox id.
    pub id: String,
    /// The incarnation the record belongs to.
    pub execution: String,
    /// Its state.
    pub state: State,
    /// The fence of the latest transition started on this record (0: none).
    pub fence: u64,
    /// When it should end (eviction), ms since the Unix epoch as stored.
    pub end_ms: u64,
    /// The transition holding the lease, if the record names a holder
    /// (compare `until` with the time to tell live from stuck).
    pub lease: Option<ViewedLease>,
    /// The deadline of a reservation of this record (a resume in
    /// progress), ms since the Unix epoch by the Redis clock.
    pub reserved_until_ms: Option<u64>,
    /// When a tombstone expires (local clock, from its TTL when announced).
    pub expires_at: Option<SystemTime>,
}

impl ViewedSandbox {
    /// The end time as a wall-clock time.
    pub fn end_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.end_ms)
    }
}

/// The lease named by a record, as announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewedLease {
    /// Its action.
    pub action: Action,
    /// Who holds it.
    pub holder: String,
    /// Its deadline, ms since the Unix epoch by the Redis clock.
    pub until_ms: u64,
}

/// One change, as announced (or as a snapshot row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// The record as it now is.
    Record(ViewedSandbox),
    /// The record is gone.
    Removed(String),
    /// A reservation of the id held until a deadline (ms), or released.
    Reserved(String, Option<u64>),
    /// The team's own limit.
    Limit(Option<usize>),
    /// Something no change describes (a repair): re-read the team.
    Reread,
}

/// A change with its place in the team's sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Announcement {
    pub seq: u64,
    /// When the script ran, ms since the Unix epoch by the Redis clock.
    pub at_ms: u64,
    pub change: Change,
}

fn opt(word: &str) -> Option<&str> {
    Some(word).filter(|w| *w != "-")
}

fn num<T: std::str::FromStr>(word: &str) -> Result<T, String> {
    word.parse()
        .map_err(|_| format!("{word:?} is not a number"))
}

fn opt_num<T: std::str::FromStr>(word: &str) -> Result<Option<T>, String> {
    opt(word).map(num).transpose()
}

/// Parses a change: `s <id> <state> <exec> <fence> <end_ms> <action>
/// <holder> <until_ms> <resv_ms> <ttl_ms>`, `x <id>`, `r <id> <deadline>`,
/// `l <limit>`, `*`. `now` turns a tombstone's TTL into a time.
pub(crate) fn parse_change(text: &str, now: SystemTime) -> Result<Change, String> {
    let w: Vec<&str> = text.split(' ').collect();
    let bad = || format!("unreadable change {text:?}");
    match (w[0], w.len()) {
        ("s", 11) => {
            let state: State = w[2].parse().map_err(|e: String| e)?;
            let lease = match (opt(w[6]), opt(w[7]), opt(w[8])) {
                (Some(a), Some(h), Some(u)) => Some(ViewedLease {
                    action: a.parse().map_err(|e: String| e)?,
                    holder: h.to_string(),
                    until_ms: num(u)?,
                }),
                (_, None, None) => None,
                _ => return Err(bad()),
            };
            Ok(Change::Record(ViewedSandbox {
                id: w[1].to_string(),
                execution: w[3].to_string(),
                state,
                fence: num(w[4])?,
                end_ms: num(w[5])?,
                lease,
                reserved_until_ms: opt_num(w[9])?,
                expires_at: opt_num::<u64>(w[10])?.map(|ms| now + Duration::from_millis(ms)),
            }))
        }
        ("x", 2) => Ok(Change::Removed(w[1].to_string())),
        ("r", 3) => Ok(Change::Reserved(w[1].to_string(), opt_num(w[2])?)),
        ("l", 2) => Ok(Change::Limit(opt_num(w[1])?)),
        ("*", 1) => Ok(Change::Reread),
        _ => Err(bad()),
    }
}

/// Parses a message of the team's channel: `None` when it carries no
/// announcement (a wake-up alone), else the announcement or why it is
/// unreadable.
pub(crate) fn parse_announcement(
    payload: &str,
    now: SystemTime,
) -> Option<Result<Announcement, String>> {
    let view = payload.strip_prefix('=')?;
    let view = view.split_once('\n').map_or(view, |(v, _)| v);
    Some((|| {
        let unreadable = || format!("unreadable announcement {view:?}");
        let (seq, rest) = view.split_once(' ').ok_or_else(unreadable)?;
        let (at_ms, change) = rest.split_once(' ').ok_or_else(unreadable)?;
        Ok(Announcement {
            seq: num(seq)?,
            at_ms: num(at_ms)?,
            change: parse_change(change, now)?,
        })
    })())
}

/// One team as a view holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Model {
    /// By id (the order `list` pages in).
    pub sandboxes: BTreeMap<String, ViewedSandbox>,
    /// Reservations: id -> deadline (ms, Redis clock).
    pub reservations: HashMap<String, u64>,
    pub limit: Option<usize>,
    /// The sequence of the last change applied.
    pub seq: u64,
}

/// What applying one announcement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The next change: applied.
    Next,
    /// Already applied (at or before the model's sequence): ignored.
    Old,
    /// A sequence number was skipped: the model cannot follow.
    Gap,
    /// The change asks for a re-read.
    Reread,
}

impl Model {
    fn change(&mut self, change: Change) {
        match change {
            Change::Record(sb) => {
                match sb.reserved_until_ms {
                    Some(d) => self.reservations.insert(sb.id.clone(), d),
                    None => self.reservations.remove(&sb.id),
                };
                self.sandboxes.insert(sb.id.clone(), sb);
            }
            Change::Removed(id) => {
                self.sandboxes.remove(&id);
            }
            Change::Reserved(id, deadline) => {
                if let Some(sb) = self.sandboxes.get_mut(&id) {
                    sb.reserved_until_ms = deadline;
                }
                match deadline {
                    Some(d) => self.reservations.insert(id, d),
                    None => self.reservations.remove(&id),
                };
            }
            Change::Limit(limit) => self.limit = limit,
            Change::Reread => {}
        }
    }

    /// Applies the next announcement, in sequence order.
    pub(crate) fn apply(&mut self, a: Announcement) -> Applied {
        if a.seq <= self.seq {
            return Applied::Old;
        }
        if a.seq != self.seq + 1 {
            return Applied::Gap;
        }
        if a.change == Change::Reread {
            return Applied::Reread;
        }
        self.seq = a.seq;
        self.change(a.change);
        Applied::Next
    }
}

/// One page of a snapshot (`lua/view.lua`): read atomically at `seq`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Page {
    pub seq: u64,
    pub rows: Vec<ViewedSandbox>,
    /// The first page's reservations (id, deadline ms) and limit.
    pub reservations: Vec<(String, u64)>,
    pub limit: Option<usize>,
    pub next: Option<String>,
}

/// Why a snapshot could not be assembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unassembled {
    /// Announcements up to this sequence are still to come.
    Short(u64),
    /// One was missed.
    Gap,
    /// One asked for a re-read.
    Reread,
}

/// Assembles a model from the pages of a snapshot (the first page first)
/// and the announcements received since before the first page was read,
/// in the order received. Every announcement after the first page's
/// sequence must be there, without a gap, up to the last page's sequence
/// at least.
pub(crate) fn assemble(pages: Vec<Page>, received: &[Announcement]) -> Result<Model, Unassembled> {
    let first = pages.first().map_or(0, |p| p.seq);
    let last = pages.iter().map(|p| p.seq).max().unwrap_or(0);
    let mut model = Model {
        seq: first,
        ..Model::default()
    };
    for (i, page) in pages.into_iter().enumerate() {
        if i == 0 {
            model.reservations.extend(page.reservations);
            model.limit = page.limit;
        }
        for sb in page.rows {
            model.change(Change::Record(sb));
        }
    }
    // Reservations of ids with a record were overridden by their rows
    // (read later); the rest came from the first page.
    for a in received {
        match model.apply(a.clone()) {
            Applied::Next | Applied::Old => {}
            Applied::Gap => return Err(Unassembled::Gap),
            Applied::Reread => return Err(Unassembled::Reread),
        }
    }
    if model.seq < last {
        return Err(Unassembled::Short(last));
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000)
    }

    fn ann(seq: u64, change: &str) -> Announcement {
        parse_announcement(&format!("={seq} 5 {change}"), now())
            .unwrap()
            .unwrap()
    }

    fn row(change: &str) -> ViewedSandbox {
        match parse_change(change, now()).unwrap() {
            Change::Record(sb) => sb,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn announcements_parse_with_or_without_a_wake_up() {
        let a = parse_announcement(
            "=7 5 s s1 pausing e1 42 1000 pause c/1 2000 - -\no s1 41 pause failed disk: full",
            now(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.seq, 7);
        let Change::Record(sb) = a.change else {
            panic!()
        };
        assert_eq!((sb.state, sb.fence, sb.end_ms), (State::Pausing, 42, 1000));
        assert_eq!(sb.lease.unwrap().until_ms, 2000);
        let paused = row("s s1 paused e1 42 1000 pause - - - 5000");
        assert_eq!(paused.lease, None);
        assert_eq!(paused.expires_at, Some(now() + Duration::from_secs(5)));
        assert_eq!(ann(3, "x s1").change, Change::Removed("s1".into()));
        assert_eq!(
            ann(3, "r s1 9").change,
            Change::Reserved("s1".into(), Some(9))
        );
        assert_eq!(ann(3, "l -").change, Change::Limit(None));
        assert_eq!(ann(3, "*").change, Change::Reread);
        assert!(parse_announcement("o s1 4 pause succeeded ", now()).is_none());
        for bad in [
            "=x 5 s s1",
            "=1 5 s s1 running",
            "=1 5 s s1 flying e1 1 1 - - - - -",
            "=1 5 s s1 running e1 1 1 pause c/1 - - -",
            "=1 5 q",
            "=1 x *",
            "=1 5",
            "=1",
        ] {
            assert!(parse_announcement(bad, now()).unwrap().is_err(), "{bad}");
        }
    }

    #[test]
    fn changes_apply_in_order_and_a_gap_is_found() {
        let mut m = Model {
            seq: 4,
            ..Model::default()
        };
        assert_eq!(
            m.apply(ann(5, "s s1 running e1 0 1 - - - - -")),
            Applied::Next
        );
        assert_eq!(m.apply(ann(5, "x s1")), Applied::Old);
        assert_eq!(m.apply(ann(7, "x s1")), Applied::Gap);
        assert_eq!(m.sandboxes.len(), 1);
        assert_eq!(m.apply(ann(6, "r s2 99")), Applied::Next);
        assert_eq!(m.reservations.get("s2"), Some(&99));
        // A register consumes the reservation.
        assert_eq!(
            m.apply(ann(7, "s s2 running e1 0 1 - - - - -")),
            Applied::Next
        );
        assert!(m.reservations.is_empty());
        assert_eq!(m.apply(ann(8, "*")), Applied::Reread);
        assert_eq!(m.seq, 7);
    }

    #[test]
    fn a_paged_snapshot_ends_in_the_latest_state() {
        // Page 1 (ids ..s2) read at 10, page 2 (s3..) read at 12; s1 was
        // paused at 11 (after page 1), s3 was created at 11 (page 2 saw it)
        // and s2 removed at 12.
        let pages = vec![
            Page {
                seq: 10,
                rows: vec![
                    row("s s1 running e1 5 1 - - - - -"),
                    row("s s2 running e1 0 1 - - - - -"),
                ],
                reservations: vec![("s3".into(), 50)],
                limit: Some(3),
                next: Some("s2".into()),
            },
            Page {
                seq: 12,
                rows: vec![row("s s3 running e1 0 1 - - - - -")],
                ..Page::default()
            },
        ];
        // Announcements at or before the first page's sequence are old.
        let received = vec![
            ann(9, "x s9"),
            ann(11, "s s1 paused e1 6 1 pause - - - -"),
            ann(12, "x s2"),
        ];
        assert!(assemble(pages.clone(), &received).is_ok());
        let received = vec![ann(11, "s s1 paused e1 6 1 pause - - - -"), ann(12, "x s2")];
        let m = assemble(pages.clone(), &received).unwrap();
        assert_eq!(m.seq, 12);
        assert_eq!(m.sandboxes["s1"].state, State::Paused);
        assert!(!m.sandboxes.contains_key("s2"));
        assert!(m.sandboxes.contains_key("s3"));
        assert!(m.reservations.is_empty(), "s3's row has no reservation");
        assert_eq!(m.limit, Some(3));
        assert_eq!(
            assemble(pages.clone(), &received[..1]),
            Err(Unassembled::Short(12))
        );
        assert_eq!(
            assemble(pages, &[ann(11, "x s1"), ann(13, "x s2")]),
            Err(Unassembled::Gap)
        );
    }
}
