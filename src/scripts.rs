//! The Lua scripts: their sources (`lua/`, compiled in), assembled for one
//! coordinator when it is built.
//!
//! A script file names the shared pieces it uses with `--!include <file>`
//! lines (from `lua/include/`, spliced in, as BullMQ's includes do) and
//! marks with `--!generated` where this coordinator's constants go: the
//! schema version, the lifecycle's digest, its rule row for the action
//! (`begin_<action>`), its state classes and where each action ends, the
//! retentions, and the publish command (`PUBLISH`, or `SPUBLISH` on Redis
//! Cluster). The policy is thus part of the text, and the SHA1 of a script
//! names the lifecycle and settings it was built for. Every assembled
//! script is one self-contained file that `redis-cli --eval` runs as it is
//! (`sandboxctl scripts --dump DIR` writes them out).

use std::fmt::Write as _;

use crate::keys::SCHEMA_VERSION;
use crate::lifecycle::{Action, Decision, LeaseView, Lifecycle, State, StateClass};

/// One assembled script: its name, text and SHA1 (what `SCRIPT LOAD` returns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    name: String,
    source: String,
    sha: String,
}

impl Script {
    fn new(name: String, source: String) -> Script {
        let sha = sha1_smol::Sha1::from(&source).digest().to_string();
        Script { name, source, sha }
    }

    /// The name (`begin_pause`, `finish`, ...): the file `sandboxctl scripts
    /// --dump` writes is `<name>.lua`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The assembled Lua text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Hex SHA1 of the text.
    pub fn sha(&self) -> &str {
        &self.sha
    }
}

/// What, besides the lifecycle, goes into the scripts' text (for
/// [`assemble`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptOptions {
    /// Redis Cluster (sharded pub/sub: `SPUBLISH`) or a single server.
    pub cluster: bool,
    /// How long each transition's outcome is kept.
    pub outcome_retention: std::time::Duration,
    /// How long tombstones are kept (zero: forever).
    pub tombstone_retention: std::time::Duration,
}

impl Default for ScriptOptions {
    fn default() -> Self {
        ScriptOptions {
            cluster: false,
            outcome_retention: std::time::Duration::from_secs(600),
            tombstone_retention: std::time::Duration::from_secs(24 * 3600),
        }
    }
}

/// Every script as a coordinator with `lifecycle` and `options` (and the
/// builder's defaults otherwise) assembles it — without connecting, for
/// `sandboxctl scripts` and for running them by hand.
pub fn assemble(lifecycle: &Lifecycle, options: ScriptOptions) -> Vec<Script> {
    let settings = ScriptSettings {
        publish: if options.cluster {
            "SPUBLISH"
        } else {
            "PUBLISH"
        },
        outcome_ms: options.outcome_retention.as_millis() as u64,
        tombstone_ms: options.tombstone_retention.as_millis() as u64,
    };
    Scripts::assemble(lifecycle, &settings)
        .all()
        .into_iter()
        .cloned()
        .collect()
}

/// What, besides the lifecycle, is generated into the scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScriptSettings {
    /// `PUBLISH` on a single server, `SPUBLISH` on Redis Cluster.
    pub publish: &'static str,
    /// How long a transition's outcome is kept, ms.
    pub outcome_ms: u64,
    /// How long tombstones are kept, ms (0: forever).
    pub tombstone_ms: u64,
}

/// The shared pieces, by the name `--!include` uses.
const INCLUDES: [(&str, &str); 11] = [
    ("errors.lua", include_str!("../lua/include/errors.lua")),
    ("clock.lua", include_str!("../lua/include/clock.lua")),
    ("record.lua", include_str!("../lua/include/record.lua")),
    ("data.lua", include_str!("../lua/include/data.lua")),
    ("queue.lua", include_str!("../lua/include/queue.lua")),
    ("notify.lua", include_str!("../lua/include/notify.lua")),
    ("outcome.lua", include_str!("../lua/include/outcome.lua")),
    ("indexes.lua", include_str!("../lua/include/indexes.lua")),
    (
        "finish_body.lua",
        include_str!("../lua/include/finish_body.lua"),
    ),
    (
        "record_reply.lua",
        include_str!("../lua/include/record_reply.lua"),
    ),
    ("due_team.lua", include_str!("../lua/include/due_team.lua")),
];

macro_rules! scripts {
    ($($field:ident),* $(,)?) => {
        /// Every script of one coordinator, assembled.
        #[derive(Debug, Clone)]
        pub(crate) struct Scripts {
            /// `begin_pause`, `begin_kill`, `begin_snapshot`, in [`Action::ALL`] order.
            pub begin: [Script; 3],
            $(
                #[doc = concat!("`lua/", stringify!($field), ".lua`")]
                pub $field: Script,
            )*
        }

        impl Scripts {
            /// Assembles every script for `lifecycle` and `settings`.
            pub(crate) fn assemble(lifecycle: &Lifecycle, settings: &ScriptSettings) -> Scripts {
                let common = prelude(lifecycle, settings);
                let begin = Action::ALL.map(|action| {
                    let mut generated = common.clone();
                    begin_prelude(&mut generated, lifecycle, action);
                    Script::new(
                        format!("begin_{action}"),
                        splice(include_str!("../lua/begin.lua"), &generated),
                    )
                });
                Scripts {
                    begin,
                    $(
                        $field: Script::new(
                            stringify!($field).to_string(),
                            splice(include_str!(concat!("../lua/", stringify!($field), ".lua")), &common),
                        ),
                    )*
                }
            }

            /// Every script, for loading, listing and dumping.
            pub(crate) fn all(&self) -> Vec<&Script> {
                let mut all: Vec<&Script> = self.begin.iter().collect();
                $( all.push(&self.$field); )*
                all
            }
        }
    };
}

scripts!(
    finish,
    cancel,
    extend,
    settle,
    register,
    remove,
    set_end_time,
    inspect,
    count,
    due,
    due_slot,
    reserve,
    unreserve,
    team_limit,
    migrate,
    repair,
    sweep,
    permissions,
    view,
);

impl Scripts {
    /// The begin script of `action`.
    pub(crate) fn begin(&self, action: Action) -> &Script {
        &self.begin[Action::ALL.iter().position(|a| *a == action).unwrap_or(0)]
    }
}

/// Splices the includes and the generated constants into `source`, then
/// drops the helpers it never calls ([`without_unused_helpers`]).
fn splice(source: &str, generated: &str) -> String {
    without_unused_helpers(&spliced(source, generated))
}

fn spliced(source: &str, generated: &str) -> String {
    let mut out = String::with_capacity(source.len() * 3);
    for line in source.lines() {
        if let Some(name) = line.strip_prefix("--!include ") {
            let name = name.trim();
            let piece = INCLUDES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, text)| *text)
                .unwrap_or_else(|| panic!("lua: unknown include {name:?}"));
            let _ = writeln!(out, "-- {name} (lua/include/{name}) --");
            out.push_str(piece);
            if !piece.ends_with('\n') {
                out.push('\n');
            }
        } else if line.trim() == "--!generated" {
            out.push_str(generated);
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `text` without the top-level helpers (`local function NAME(` at the
/// start of a line, up to the first line that is `end`) that its code
/// (comments aside) never names, and the comment lines right above each,
/// until none is left: a script pays on every call for defining each
/// helper it holds (about 1k instructions each), so it holds only those it
/// may call.
fn without_unused_helpers(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    'again: loop {
        let code = code_of(&lines);
        let mut i = 0;
        while i < lines.len() {
            let Some(name) = helper_name(lines[i]) else {
                i += 1;
                continue;
            };
            let Some(len) = lines[i..].iter().position(|l| *l == "end") else {
                break 'again;
            };
            let (start, stop) = (i, i + len + 1);
            let used = code[..start]
                .iter()
                .chain(&code[stop..])
                .any(|l| names(l, name));
            if !used {
                let mut first = start;
                while first > 0
                    && lines[first - 1].starts_with("-- ")
                    && !lines[first - 1].ends_with(" --")
                {
                    first -= 1;
                }
                lines.drain(first..stop);
                continue 'again;
            }
            i = stop;
        }
        break;
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The name of the helper a line defines (`local function NAME(`).
fn helper_name(line: &str) -> Option<&str> {
    line.strip_prefix("local function ")
        .and_then(|rest| rest.split_once('('))
        .map(|(name, _)| name)
}

/// Each line's code: "" inside a `--[[ ... ]]` block, the text before
/// `--` otherwise (the scripts have no `--` inside a string).
fn code_of<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    let mut block = false;
    lines
        .iter()
        .map(|line| {
            if block {
                block = !line.contains("]]");
                return "";
            }
            if line.starts_with("--[[") {
                block = !line.contains("]]");
                return "";
            }
            line.split_once("--").map_or(line, |(code, _)| code)
        })
        .collect()
}

/// Whether `line` has `name` as a whole word.
fn names(line: &str, name: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    line.match_indices(name).any(|(at, _)| {
        !line[..at].chars().next_back().is_some_and(word)
            && !line[at + name.len()..].chars().next().is_some_and(word)
    })
}

fn lua_str(s: &str) -> String {
    format!("'{s}'")
}

/// The constants and policy functions every script gets.
fn prelude(lc: &Lifecycle, settings: &ScriptSettings) -> String {
    let mut g = String::new();
    let _ = writeln!(
        g,
        "-- generated by src/scripts.rs for lifecycle {} --",
        lc.digest()
    );
    let _ = writeln!(g, "local SCHEMA = {}", lua_str(SCHEMA_VERSION));
    let _ = writeln!(g, "local LIFECYCLE = {}", lua_str(&lc.digest()));
    let _ = writeln!(g, "local PUBLISH = {}", lua_str(settings.publish));
    let _ = writeln!(g, "local OUTCOME_MS = {}", settings.outcome_ms);
    let _ = writeln!(g, "local TOMBSTONE_MS = {}", settings.tombstone_ms);
    let _ = writeln!(g, "local INITIAL = {}", lua_str(lc.initial().as_str()));
    g.push_str("local function class_of(s)\n");
    for state in State::ALL {
        let _ = writeln!(
            g,
            "  if s == {} then return {} end",
            lua_str(state.as_str()),
            lua_str(lc.class(state).as_str())
        );
    }
    g.push_str("  return nil\nend\n");
    g.push_str(
        "local function is_tombstone(s)\n  local c = class_of(s)\n  return c == 'resumable' or c == 'final'\nend\n",
    );
    let actions: Vec<String> = Action::ALL
        .iter()
        .map(|a| format!("a == {}", lua_str(a.as_str())))
        .collect();
    let _ = writeln!(
        g,
        "local function is_action(a)\n  return {}\nend",
        actions.join(" or ")
    );
    g.push_str("-- The state a finished transition leaves ('' = stays in flight, stuck).\n");
    g.push_str("local function after(a, outcome)\n");
    for action in Action::ALL {
        let spec = lc.spec(action);
        let failed = spec.on_failure.map_or("", State::as_str);
        let _ = writeln!(
            g,
            "  if a == {} then if outcome == 'succeeded' then return {} end return {} end",
            lua_str(action.as_str()),
            lua_str(spec.on_success.as_str()),
            lua_str(failed)
        );
    }
    g.push_str("  return ''\nend\n");
    g
}

/// The rule row of one action, for `begin_<action>`.
fn begin_prelude(g: &mut String, lc: &Lifecycle, action: Action) {
    let spec = lc.spec(action);
    let _ = writeln!(
        g,
        "local ACTION, IN_FLIGHT, PULL_END = {}, {}, {}",
        lua_str(action.as_str()),
        lua_str(spec.in_flight.as_str()),
        spec.ends_sandbox
    );
    g.push_str("-- The lifecycle's decision for this action: (state, lease live?) -> decision.\n");
    g.push_str("local function rule(s, live)\n");
    for state in State::ALL {
        let live = lc.decide(state, LeaseView::Live, action);
        let stuck = lc.decide(state, LeaseView::None, action);
        let in_flight = matches!(lc.class(state), StateClass::InFlight(_));
        if live == stuck || !in_flight {
            let _ = writeln!(
                g,
                "  if s == {} then return {} end",
                lua_str(state.as_str()),
                lua_str(stuck.as_str())
            );
        } else {
            let _ = writeln!(
                g,
                "  if s == {} then if live then return {} end return {} end",
                lua_str(state.as_str()),
                lua_str(live.as_str()),
                lua_str(stuck.as_str())
            );
        }
    }
    let _ = writeln!(g, "  return {}\nend", lua_str(Decision::Invalid.as_str()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ScriptSettings {
        ScriptSettings {
            publish: "PUBLISH",
            outcome_ms: 600_000,
            tombstone_ms: 86_400_000,
        }
    }

    #[test]
    fn every_script_is_one_file_without_directives() {
        let scripts = Scripts::assemble(&Lifecycle::sandbox(), &settings());
        for s in scripts.all() {
            assert!(
                !s.source().lines().any(|l| l.starts_with("--!")),
                "{} keeps a directive",
                s.name()
            );
            assert!(s.source().contains("local SCHEMA = '3'"), "{}", s.name());
        }
        assert_eq!(scripts.all().len(), 22);
    }

    #[test]
    fn every_script_defines_only_helpers_it_names() {
        let scripts = Scripts::assemble(&Lifecycle::sandbox(), &settings());
        for s in scripts.all() {
            let lines: Vec<&str> = s.source().lines().collect();
            let code = code_of(&lines);
            for (i, line) in lines.iter().enumerate() {
                let Some(name) = helper_name(line) else {
                    continue;
                };
                let calls = code
                    .iter()
                    .enumerate()
                    .filter(|(j, l)| *j != i && names(l, name))
                    .count();
                assert!(calls > 0, "{} defines {name} and never names it", s.name());
            }
        }
        // The pieces are still there where they are used.
        assert!(scripts.finish.source().contains("local function after("));
        assert!(
            !scripts
                .begin(Action::Pause)
                .source()
                .contains("local function after(")
        );
        assert!(
            !scripts
                .begin(Action::Pause)
                .source()
                .contains("local function places_taken(")
        );
    }

    /// Every key a script names from its team prefix (`TP .. 'expiry'`,
    /// `TP .. 'rec:' .. id`) is declared in its header's KEYS (Redis
    /// Cluster checks declared keys during a slot migration); a script
    /// that reads records it cannot declare says so ("not declared").
    #[test]
    fn every_key_a_script_touches_is_declared_in_its_header() {
        let scripts = Scripts::assemble(&Lifecycle::sandbox(), &settings());
        for s in scripts.all() {
            let text = s.source();
            let header = text.find("]]").map_or("", |end| &text[..end]);
            let mut declared = Vec::new();
            for line in header
                .lines()
                .filter(|l| l.trim_start().starts_with("KEYS["))
            {
                for part in line.split(['}', ',']).skip(1) {
                    let name: String = part
                        .trim_start()
                        .trim_start_matches(':')
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        declared.push(name);
                    }
                }
            }
            let prose = header.split_whitespace().collect::<Vec<_>>().join(" ");
            let lines: Vec<&str> = text.lines().collect();
            let code = code_of(&lines).join("\n");
            // The script's team prefix TP, and `tp` in the pieces that take
            // it as a parameter.
            let uses = code
                .match_indices("TP .. '")
                .chain(code.match_indices("tp .. '"));
            for (at, _) in uses {
                let name: String = code[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name == "notify" {
                    continue; // the team's channel, not a key
                }
                // A read-only script may say in its header that it reads
                // records (or, per slot, whole teams) without declaring them.
                let undeclared_records = name == "rec" && header.contains("not declared");
                let undeclared_teams = prose.contains("read without being declared");
                assert!(
                    declared.contains(&name) || undeclared_records || undeclared_teams,
                    "{} touches <team>:{name} but its header declares only {declared:?}",
                    s.name()
                );
            }
        }
    }

    #[test]
    fn a_helper_named_only_by_an_unused_helper_goes_too() {
        let text = "--[[ a b c ]]\n-- a: b\nlocal function a(x)\n  return b(x) -- c\nend\nlocal function b(x)\n  return x\nend\nlocal function c()\nend\nreturn c()\n";
        assert_eq!(
            without_unused_helpers(text),
            "--[[ a b c ]]\nlocal function c()\nend\nreturn c()\n"
        );
        assert!(names("x = foo(1)", "foo"));
        assert!(!names("x = foobar(1)", "foo"));
        assert!(!names("x = my_foo(1)", "foo"));
    }

    #[test]
    fn the_rule_row_is_generated_into_begin() {
        let scripts = Scripts::assemble(&Lifecycle::sandbox(), &settings());
        let kill = scripts.begin(Action::Kill).source();
        assert!(kill.contains("if s == 'paused' then return 'absorbed' end"));
        assert!(
            kill.contains(
                "if s == 'pausing' then if live then return 'wait' end return 'start' end"
            )
        );
        let changed = Scripts::assemble(&Lifecycle::sandbox().kill_deletes_paused(), &settings());
        assert!(
            changed
                .begin(Action::Kill)
                .source()
                .contains("if s == 'paused' then return 'start' end")
        );
        assert_ne!(
            changed.begin(Action::Kill).sha(),
            scripts.begin(Action::Kill).sha()
        );
        assert_ne!(
            changed.finish.sha(),
            scripts.finish.sha(),
            "the digest is in every script"
        );
    }
}
