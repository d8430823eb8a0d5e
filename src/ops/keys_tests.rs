//! The KEYS each op passes agree, in order, with the `KEYS[n]` lines of
//! its script's header (`scripts::tests::every_key_a_script_touches_is_declared_in_its_header`
//! checks the other side: the script's body against the header). A header
//! names keys by pattern (`<ns>:{<team>}:rec:<id>`, a range
//! `KEYS[2..6] <ns>:{<team>}:expiry, :tombs, ...`, a variable part
//! `KEYS[7..] ... of each candidate`, a final `KEYS[last]`); the patterns
//! are filled in with one sample sandbox and compared with what the op
//! builds for it.

use std::time::Duration;

use crate::bounds::EndArg;
use crate::keys::{Namespace, SandboxRef, slot_tag};
use crate::lifecycle::{Action, Outcome};
use crate::ops::begin::Begin;
use crate::ops::command::Command;
use crate::ops::count::Count;
use crate::ops::due::{DueSlot, DueTeam, Sweep};
use crate::ops::end_time::SetEndTime;
use crate::ops::extend::Extend;
use crate::ops::finish::{Cancel, Finish, Target};
use crate::ops::inspect::Inspect;
use crate::ops::migrate::Migrate;
use crate::ops::register::Register;
use crate::ops::remove::Remove;
use crate::ops::repair::Repair;
use crate::ops::reserve::{Purpose, Reserve, Unreserve};
use crate::ops::settle::{Mode, Settle};
use crate::ops::team_limit::SetTeamLimit;
use crate::redis::Route;

/// The sample every pattern is filled in with.
pub(crate) struct Sample {
    pub ns: Namespace,
    pub sandbox: SandboxRef,
    pub fence: u64,
    /// The ids of a variable part (`KEYS[7..] ... <id> of each candidate`).
    pub candidates: Vec<String>,
}

impl Sample {
    pub(crate) fn new() -> Sample {
        let ns = Namespace::new("sbx").unwrap();
        let sandbox = ns.sandbox_ref("team-7", "s1").unwrap();
        Sample {
            ns,
            sandbox,
            fence: 42,
            candidates: vec!["a1".into(), "b2".into()],
        }
    }

    /// `pattern` with every placeholder filled in (`<id>` by `id`).
    fn fill(&self, script: &str, pattern: &str, id: &str) -> String {
        let tag = slot_tag(self.sandbox.keys.team.slot);
        let fence = self.fence.to_string();
        let key = [
            ("<ns>", self.ns.prefix()),
            ("<team>", self.sandbox.team.as_str()),
            ("<id>", id),
            ("<fence>", fence.as_str()),
            ("<tag>", tag),
        ]
        .iter()
        .fold(pattern.to_string(), |p, (name, value)| {
            p.replace(name, value)
        });
        assert!(
            !key.contains('<'),
            "{script}: unknown placeholder in {pattern:?}"
        );
        key
    }
}

/// One `KEYS[...]` line: which places it declares, and its patterns.
enum Places {
    One(usize),
    Range(usize, usize),
    /// `KEYS[n..]`: one key per candidate.
    Each(usize),
    Last,
}

fn places(script: &str, spec: &str) -> Places {
    let n = |s: &str| -> usize {
        s.parse()
            .unwrap_or_else(|_| panic!("{script}: KEYS[{spec}] is no index"))
    };
    match spec.split_once("..") {
        _ if spec == "last" => Places::Last,
        None => Places::One(n(spec)),
        Some((a, "")) => Places::Each(n(a)),
        Some((a, b)) => Places::Range(n(a), n(b)),
    }
}

/// The keys the header of `lua/<script>.lua` declares, in order, filled in
/// with `sample`.
pub(crate) fn declared_keys(script: &str, sample: &Sample) -> Vec<String> {
    let path = format!("{}/lua/{script}.lua", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let header = &text[..text.find("]]").unwrap_or(0)];
    let mut keys = Vec::new();
    let mut ended = false;
    for line in header.lines().map(str::trim_start) {
        let Some(rest) = line.strip_prefix("KEYS[") else {
            continue;
        };
        assert!(!ended, "{script}: KEYS[last] is not the last");
        let (spec, rest) = rest.split_once(']').expect("KEYS[...]");
        // The slot tag's placeholder holds spaces; one word from here on.
        let rest = rest
            .replace("<tag of the team's slot>", "<tag>")
            .replace("<tag of the slot>", "<tag>");
        let at = rest
            .find("<ns>")
            .unwrap_or_else(|| panic!("{script}: KEYS[{spec}] names no <ns> pattern"));
        let word = |s: &str| -> String {
            s.trim_start()
                .split([' ', ','])
                .next()
                .unwrap_or("")
                .to_string()
        };
        let first = word(&rest[at..]);
        let base = &first[..first.rfind("}:").map_or(0, |i| i + 2)];
        // A range goes on with `, :suffix` parts: the first key's prefix
        // plus the suffix.
        let mut patterns = vec![first.clone()];
        if matches!(places(script, spec), Places::Range(..)) {
            patterns.extend(
                rest[at..]
                    .split(',')
                    .skip(1)
                    .map(word)
                    .take_while(|w| w.starts_with(':'))
                    .map(|w| format!("{base}{}", &w[1..])),
            );
        }
        let fill = |p: &str| sample.fill(script, p, &sample.sandbox.id);
        let place = keys.len() + 1;
        match places(script, spec) {
            Places::One(n) => {
                assert_eq!((n, patterns.len()), (place, 1), "{script}: KEYS[{spec}]");
                keys.push(fill(&patterns[0]));
            }
            Places::Range(a, b) => {
                assert_eq!(a, place, "{script}: KEYS[{spec}]");
                assert_eq!(
                    b + 1 - a,
                    patterns.len(),
                    "{script}: KEYS[{spec}] {patterns:?}"
                );
                keys.extend(patterns.iter().map(|p| fill(p)));
            }
            Places::Each(a) => {
                assert_eq!((a, patterns.len()), (place, 1), "{script}: KEYS[{spec}]");
                keys.extend(
                    sample
                        .candidates
                        .iter()
                        .map(|id| sample.fill(script, &patterns[0], id)),
                );
            }
            Places::Last => {
                assert_eq!(patterns.len(), 1, "{script}: KEYS[{spec}]");
                keys.push(fill(&patterns[0]));
                ended = true;
            }
        }
    }
    assert!(!keys.is_empty(), "{script}: no KEYS in its header");
    keys
}

/// Asserts that `command` passes the keys `lua/<script>.lua` declares.
pub(crate) fn assert_keys_agree(script: &str, command: &impl Command, sample: &Sample) {
    assert_eq!(
        command.keys(),
        declared_keys(script, sample),
        "the keys the op passes (left) differ from lua/{script}.lua's header (right)"
    );
}

/// The scripts whose keys are checked elsewhere or not at all.
const NOT_HERE: [(&str, &str); 2] = [
    ("view", "view::snapshot's tests (its command lives there)"),
    (
        "permissions",
        "its one key is any key of the namespace, for routing",
    ),
];

#[test]
fn every_op_passes_the_keys_its_scripts_header_declares() {
    let s = Sample::new();
    let sb = &s.sandbox;
    let team = &sb.keys.team;
    let target = Target {
        sandbox: sb.clone(),
        action: Action::Kill,
        fence: s.fence,
        holder: "h/1".into(),
    };
    let end = EndArg {
        mode: "at",
        ms: "4102444800000".into(),
    };
    let mut checked = Vec::new();
    let mut check = |script: &'static str, command: &dyn Fn(&str, &Sample)| {
        command(script, &s);
        checked.push(script);
    };
    check("begin", &|name, s| {
        for action in Action::ALL {
            let begin = Begin {
                sandbox: &s.sandbox,
                action,
                holder: "h/1",
                lease: Duration::from_secs(30),
                expect_execution: None,
                eviction: false,
                queue_place: Duration::from_secs(1),
                route: Route::default(),
            };
            assert_keys_agree(name, &begin, s);
        }
    });
    check("finish", &|name, s| {
        let finish = Finish {
            target: &target,
            outcome: Outcome::Succeeded,
            reason: "",
            until: None,
            unsure: false,
            route: Route::default(),
        };
        assert_keys_agree(name, &finish, s);
    });
    check("cancel", &|name, s| {
        let cancel = Cancel {
            sandbox: &s.sandbox,
            holder: "h/1",
            route: Route::default(),
        };
        assert_keys_agree(name, &cancel, s);
    });
    check("extend", &|name, s| {
        let extend = Extend {
            target: &target,
            lease: Duration::from_secs(30),
        };
        assert_keys_agree(name, &extend, s);
    });
    check("settle", &|name, s| {
        let settle = Settle {
            sandbox: &s.sandbox,
            fence: s.fence,
            holder: "",
            mode: Mode::Check,
            reason: "",
            deadline: None,
        };
        assert_keys_agree(name, &settle, s);
    });
    check("register", &|name, s| {
        let register = Register {
            sandbox: &s.sandbox,
            execution: "e1",
            end: &end,
            data: "",
            token: "",
            default_limit: None,
        };
        assert_keys_agree(name, &register, s);
    });
    check("remove", &|name, s| {
        let remove = Remove {
            sandbox: &s.sandbox,
            expect_execution: None,
        };
        assert_keys_agree(name, &remove, s);
    });
    check("set_end_time", &|name, s| {
        let set = SetEndTime {
            sandbox: &s.sandbox,
            end: &end,
            expect_execution: None,
        };
        assert_keys_agree(name, &set, s);
    });
    check("inspect", &|name, s| {
        let inspect = Inspect {
            sandbox: &s.sandbox,
            deadline: None,
        };
        assert_keys_agree(name, &inspect, s);
    });
    check("count", &|name, s| {
        assert_keys_agree(name, &Count { team }, s);
    });
    check("due", &|name, s| {
        let due = DueTeam {
            team: &s.sandbox.team,
            keys: team,
            limit: 10,
        };
        assert_keys_agree(name, &due, s);
    });
    check("due_slot", &|name, s| {
        let due = DueSlot {
            ns: &s.ns,
            slot: team.slot,
            limit: 10,
        };
        assert_keys_agree(name, &due, s);
    });
    check("sweep", &|name, s| {
        let sweep = Sweep {
            sandbox: &s.sandbox,
        };
        assert_keys_agree(name, &sweep, s);
    });
    check("reserve", &|name, s| {
        for purpose in [Purpose::Create, Purpose::Resume] {
            let reserve = Reserve {
                sandbox: &s.sandbox,
                token: "tok",
                ttl: Duration::from_secs(30),
                purpose,
                default_limit: None,
            };
            assert_keys_agree(name, &reserve, s);
        }
    });
    check("unreserve", &|name, s| {
        let unreserve = Unreserve {
            sandbox: &s.sandbox,
            token: "tok",
        };
        assert_keys_agree(name, &unreserve, s);
    });
    check("team_limit", &|name, s| {
        let set = SetTeamLimit {
            team,
            limit: Some(3),
        };
        assert_keys_agree(name, &set, s);
    });
    check("migrate", &|name, s| {
        let migrate = Migrate {
            sandbox: &s.sandbox,
            adopt_lifecycle: false,
        };
        assert_keys_agree(name, &migrate, s);
    });
    check("repair", &|name, s| {
        let repair = Repair {
            team: &s.sandbox.team,
            keys: team,
            candidates: s.candidates.clone(),
            dry_run: true,
        };
        assert_keys_agree(name, &repair, s);
    });

    // Every script of lua/ is checked, here or where NOT_HERE says.
    let dir = format!("{}/lua", env!("CARGO_MANIFEST_DIR"));
    let mut scripts: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".lua").map(str::to_string))
        .collect();
    scripts.sort();
    let mut covered: Vec<String> = checked
        .iter()
        .chain(NOT_HERE.iter().map(|(s, _)| s))
        .map(|s| s.to_string())
        .collect();
    covered.sort();
    assert_eq!(covered, scripts);
}

#[test]
fn a_header_reads_ranges_variable_parts_and_placeholders_with_spaces() {
    let s = Sample::new();
    let repair = declared_keys("repair", &s);
    let t = &s.sandbox.keys.team;
    assert_eq!(
        repair[..5],
        [t.ids(), t.expiry(), t.tombs(), t.resv(), t.hash()]
    );
    assert_eq!(repair[5], t.slot_teams());
    assert_eq!(repair[6..8], [t.record("a1"), t.record("b2")]);
    assert_eq!(repair[8], t.seq());
    assert_eq!(repair.len(), 9);
    assert_eq!(declared_keys("settle", &s)[1], s.sandbox.outcome(42));
}
