//! The runbooks of docs/operations.md (and the session of
//! docs/redis-layout.md), run as written: every ```console block is a
//! session of `$ ` commands, each followed by what it prints. The test runs
//! each command in bash against a private Redis — `sandboxctl` is the
//! built binary (first on `PATH`), `REDIS_URL` names the test's server,
//! `redis-cli` is a shell function reaching it — and compares the output
//! with the lines under the command, up to what differs from run to run
//! (see [`normalize`]). Before some commands it writes the state the
//! runbook starts from (stuck transitions, a damaged record, a schema-1
//! namespace) with the library, `HSET` or the schema-1 scripts;
//! [`Session::before`] says which. A doc that says something the commands
//! do not print fails here, with both sides.

#[path = "../../tests/fixture/mod.rs"]
mod fixture;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use fixture::v1::V1;
use sandbox_coordinator::{Action, BeginOptions, Begun, Coordinator, NewSandbox, Transition};
use support::replicated::{Member, TestReplicated};

const BIN: &str = env!("CARGO_BIN_EXE_sandboxctl");

/// One `$ ` command of a block and the lines printed under it.
#[derive(Debug)]
struct Step {
    command: String,
    want: Vec<String>,
}

/// Every ```console block of `markdown`, as steps, with the line number
/// of its opening fence.
fn console_blocks(markdown: &str) -> Vec<(usize, Vec<Step>)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, Vec<Step>)> = None;
    for (n, line) in markdown.lines().enumerate() {
        let line = line.trim_start();
        match &mut current {
            None if line == "```console" => current = Some((n + 1, Vec::new())),
            None => {}
            Some(_) if line.starts_with("```") => blocks.push(current.take().unwrap()),
            Some((at, steps)) => match line.strip_prefix("$ ") {
                Some(command) => steps.push(Step {
                    command: command.to_owned(),
                    want: Vec::new(),
                }),
                None => steps
                    .last_mut()
                    .unwrap_or_else(|| panic!("block at line {at}: output before a command"))
                    .want
                    .push(line.to_owned()),
            },
        }
    }
    assert!(current.is_none(), "an unclosed ```console block");
    blocks
}

/// What differs from run to run, replaced by a placeholder; the values of
/// long numbers (fences, millisecond times) are returned in order so that
/// the doc's fences can be bound to the run's.
///
/// * 40 hex digits (a script's SHA1) → `<sha>`
/// * `<pid>-<12 hex>/<n>` (a coordinator's holder id) → `<holder>`
/// * a duration such as `4.4s`, `9m55s`, `23h59m`, `120ms` → `<dur>`
/// * 13 or more digits (a fence, a time in ms) → `<n>`
/// * 4 to 12 digits (a byte size, a port) → `<k>`
///
/// Runs of spaces become one (column widths follow the values).
fn normalize(line: &str) -> (String, Vec<String>) {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::new();
    let mut longs = Vec::new();
    let mut i = 0;
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while i < chars.len() {
        let boundary = i == 0 || !word(chars[i - 1]);
        if boundary && let Some((len, placeholder)) = volatile(&chars[i..]) {
            if placeholder == "<n>" {
                longs.push(chars[i..i + len].iter().collect());
            }
            out.push_str(placeholder);
            i += len;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    // The server's own wording of a refusal differs between Redis and
    // Valkey (the doc shows Redis 7's).
    let out = out.replace(
        "No permissions to access a key",
        "this user has no permissions to access one of the keys used as arguments",
    );
    (out.split_whitespace().collect::<Vec<_>>().join(" "), longs)
}

/// The volatile token at the start of `s`, if any: its length and placeholder.
fn volatile(s: &[char]) -> Option<(usize, &'static str)> {
    let ends = |len: usize| s.get(len).is_none_or(|c| !c.is_ascii_alphanumeric());
    let run = |from: usize, f: fn(&char) -> bool| s[from..].iter().take_while(|c| f(c)).count();
    let hex = |c: &char| c.is_ascii_digit() || ('a'..='f').contains(c);
    if run(0, hex) == 40 && ends(40) {
        return Some((40, "<sha>"));
    }
    let digits = run(0, char::is_ascii_digit);
    if digits > 0 && s.get(digits) == Some(&'-') && run(digits + 1, hex) == 12 {
        let slash = digits + 13;
        if s.get(slash) == Some(&'/') {
            let n = run(slash + 1, char::is_ascii_digit);
            if n > 0 && ends(slash + 1 + n) {
                return Some((slash + 1 + n, "<holder>"));
            }
        }
    }
    // A duration: one or more <digits>[.<digits>]<unit>.
    let mut len = 0;
    loop {
        let d = run(len, char::is_ascii_digit);
        if d == 0 {
            break;
        }
        let mut at = len + d;
        if s.get(at) == Some(&'.') {
            let f = run(at + 1, char::is_ascii_digit);
            if f == 0 {
                break;
            }
            at += 1 + f;
        }
        let unit = ["ms", "us", "µs", "s", "m", "h", "d"].iter().find(|u| {
            u.chars().zip(&s[at..]).filter(|(a, b)| a == *b).count() == u.chars().count()
        });
        match unit {
            Some(u) => len = at + u.chars().count(),
            None => break,
        }
    }
    if len > 0 && ends(len) {
        return Some((len, "<dur>"));
    }
    if digits >= 13 && ends(digits) {
        return Some((digits, "<n>"));
    }
    if digits >= 4 && ends(digits) {
        return Some((digits, "<k>"));
    }
    None
}

/// Compares printed `got` lines with the doc's `want` lines, normalized; a
/// `...` line in the doc stands for any number of lines. On a match,
/// returns the pairs (doc's long number, run's) found at the same places.
fn matches(want: &[String], got: &[String]) -> Option<Vec<(String, String)>> {
    let Some((first, rest)) = want.split_first() else {
        return got.is_empty().then(Vec::new);
    };
    if first.trim() == "..." {
        return (0..=got.len()).find_map(|skip| matches(rest, &got[skip..]));
    }
    let (line, rest_got) = got.split_first()?;
    let (w, w_longs) = normalize(first);
    let (g, g_longs) = normalize(line);
    if w != g {
        return None;
    }
    let mut pairs = matches(rest, rest_got)?;
    pairs.splice(0..0, w_longs.into_iter().zip(g_longs));
    Some(pairs)
}

/// One Redis for the whole page, its TCP address, and the state the
/// runbooks build on.
struct Session {
    redis: TestReplicated,
    addr: String,
    dir: tempfile::TempDir,
    path: String,
    /// The doc's fences → this run's, learned from earlier outputs.
    fences: BTreeMap<String, String>,
    /// Transitions held open while the sessions look at them.
    held: Vec<Transition>,
    v1: Option<(V1, u64)>,
}

impl Session {
    async fn start() -> Session {
        // A private server on a loopback port whatever the backend: the
        // page's namespaces (`sbx`, `old`, `other`) and its ACL user are
        // fixed, so the server must be this test's alone (also under
        // REDIS_URL), and the permission runbook's `redis://user:pass@host:port`
        // needs TCP. A primary with no replicas is exactly that.
        let redis = TestReplicated::start(0).await;
        let addr = format!("127.0.0.1:{}", redis.port_of(Member::Primary));
        let bin_dir = std::path::Path::new(BIN).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Session {
            redis,
            addr,
            dir: tempfile::tempdir().unwrap(),
            path,
            fences: BTreeMap::new(),
            held: Vec::new(),
            v1: None,
        }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// The page's own addresses and paths, moved to this run's.
    fn substitute(&self, text: &str) -> String {
        let scripts = self.dir.path().join("sbx-scripts");
        let text = text
            .replace("127.0.0.1:6379", &self.addr)
            .replace("/tmp/sbx-scripts", &scripts.display().to_string());
        // Whole numbers only (a time in ms can be a fence's prefix).
        let mut out = String::new();
        let mut digits = String::new();
        for c in text.chars().chain(std::iter::once('\n')) {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            out.push_str(self.fences.get(&digits).unwrap_or(&digits));
            digits.clear();
            out.push(c);
        }
        out.pop();
        out
    }

    async fn coordinator(&self, namespace: &str) -> Coordinator {
        Coordinator::builder(self.url())
            .namespace(namespace)
            .build()
            .await
            .expect("coordinator connects")
    }

    /// The state a command of the page starts from, written before it runs
    /// (`block` is the first command of its block, `step` its index).
    async fn before(&mut self, block: &str, step: usize) {
        match (block, step) {
            // A stuck transition: team-1 with a running, a paused and a
            // killing sandbox, team-2 with a snapshot in flight, both held
            // (10 min leases, kept alive by their watchdogs).
            ("sandboxctl transitions", 0) => {
                let coord = self.coordinator("sbx").await;
                for (team, id) in [
                    ("team-1", "sbx-1"),
                    ("team-1", "sbx-2"),
                    ("team-1", "sbx-3"),
                    ("team-2", "sbx-9"),
                ] {
                    coord
                        .register(NewSandbox {
                            team: team.into(),
                            id: id.into(),
                            execution: "exec-1".into(),
                            end_time: Duration::from_secs(3600).into(),
                            data: String::new(),
                        })
                        .await
                        .expect("register");
                }
                let long = BeginOptions::default().lease(Duration::from_secs(600));
                started(
                    coord
                        .begin("team-1", "sbx-2", Action::Pause, long.clone())
                        .await,
                )
                .succeed()
                .await
                .expect("pause succeeds");
                let kill = started(
                    coord
                        .begin("team-1", "sbx-3", Action::Kill, long.clone())
                        .await,
                );
                // `transitions` lists the oldest first, each row's age read
                // at its own moment (a millisecond apart): half a second
                // between the two makes the kill the older one beyond doubt.
                tokio::time::sleep(Duration::from_millis(500)).await;
                let snap = started(coord.begin("team-2", "sbx-9", Action::Snapshot, long).await);
                self.held.push(kill);
                self.held.push(snap);
            }
            // A damaged record: a fix by hand gone wrong.
            ("sandboxctl inspect team-1 sbx-1", 0) => {
                let mut conn = self.redis.connection(Member::Primary).await;
                let _: () = redis::cmd("HSET")
                    .arg("sbx:{team-1}:rec:sbx-1")
                    .arg("state")
                    .arg("runing")
                    .query_async(&mut conn)
                    .await
                    .expect("HSET");
            }
            // A schema-1 namespace `old`: s1 running, s2 with a pause in
            // flight; before the second `migrate`, that pause succeeds.
            ("sandboxctl --namespace old migrate", 0) => {
                let mut v1 = V1::new(self.redis.connection(Member::Primary).await, "old");
                v1.register("t", "s1", "exec-1").await;
                v1.register("t", "s2", "exec-1").await;
                let fence = v1.begin("t", "s2", Action::Pause).await;
                self.v1 = Some((v1, fence));
            }
            ("sandboxctl --namespace old migrate", 1) => {
                let (v1, fence) = self.v1.as_mut().expect("the schema-1 writer");
                v1.succeed("t", "s2", Action::Pause, *fence).await;
            }
            // docs/redis-layout.md: team-1 with sbx-1 running after a
            // snapshot and sbx-2 paused.
            (first, 0) if first.starts_with("redis-cli HGETALL 'sbx:{team-1}:rec:sbx-1'") => {
                let coord = self.coordinator("sbx").await;
                for id in ["sbx-1", "sbx-2"] {
                    coord
                        .register(NewSandbox {
                            team: "team-1".into(),
                            id: id.into(),
                            execution: "exec-1".into(),
                            end_time: Duration::from_secs(3600).into(),
                            data: String::new(),
                        })
                        .await
                        .expect("register");
                }
                for (id, action) in [("sbx-1", Action::Snapshot), ("sbx-2", Action::Pause)] {
                    started(
                        coord
                            .begin("team-1", id, action, BeginOptions::default())
                            .await,
                    )
                    .succeed()
                    .await
                    .expect("the transition succeeds");
                }
            }
            _ => {}
        }
    }

    /// Runs one command line as written, in bash, stdout and stderr
    /// together, as a terminal shows them.
    async fn run(&self, command: &str) -> Vec<String> {
        let cli = self.redis.kind().cli_bin();
        let (host, port) = self.addr.rsplit_once(':').unwrap();
        let script = format!(
            "redis-cli() {{ command {cli} -h {host} -p {port} \"$@\"; }}\n{{\n{}\n}} 2>&1",
            self.substitute(command)
        );
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg("-c")
            .arg(script)
            .current_dir(self.dir.path())
            .env("PATH", &self.path)
            .env("REDIS_URL", self.url())
            .env_remove("SANDBOXCTL_NAMESPACE")
            .env_remove("REDIS_USERNAME")
            .env_remove("REDIS_PASSWORD")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("`{command}` did not end within 60 s"))
            .expect("bash runs");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| l.trim_end().to_owned())
            .collect()
    }

    /// Runs every block of `markdown` in order; returns the mismatches
    /// (empty when the page is right) and the number of commands run.
    async fn run_page(&mut self, name: &str, markdown: &str) -> (Vec<String>, usize) {
        let mut failures = Vec::new();
        let mut commands = 0;
        for (line, steps) in console_blocks(markdown) {
            let first = steps
                .first()
                .unwrap_or_else(|| panic!("{name}:{line}: an empty ```console block"))
                .command
                .clone();
            for (i, step) in steps.iter().enumerate() {
                self.before(&first, i).await;
                let got = self.run(&step.command).await;
                commands += 1;
                let want: Vec<String> = step.want.iter().map(|w| self.substitute(w)).collect();
                match matches(&want, &got) {
                    Some(pairs) => {
                        for (doc, run) in pairs {
                            self.fences.entry(doc).or_insert(run);
                        }
                    }
                    None => failures.push(format!(
                        "{name}:{line}: `$ {}` printed something else.\n--- the doc \
                         (normalized):\n{}\n--- the run (normalized):\n{}\n--- the run, \
                         as printed:\n{}",
                        step.command,
                        want.iter()
                            .map(|l| normalize(l).0)
                            .collect::<Vec<_>>()
                            .join("\n"),
                        got.iter()
                            .map(|l| normalize(l).0)
                            .collect::<Vec<_>>()
                            .join("\n"),
                        got.join("\n"),
                    )),
                }
            }
        }
        (failures, commands)
    }
}

fn started(begun: Result<Begun, sandbox_coordinator::Error>) -> Transition {
    match begun.expect("begin") {
        Begun::Started(t) => t,
        other => panic!("expected Started, got {other:?}"),
    }
}

fn doc(name: &str) -> String {
    let path = format!("{}/../docs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_runbooks_run_as_written() {
    let mut session = Session::start().await;
    let (failures, commands) = session
        .run_page("docs/operations.md", &doc("operations.md"))
        .await;
    assert!(
        failures.is_empty(),
        "{} of {commands} commands printed something else than the doc shows:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    println!("docs/operations.md: {commands} commands ran as written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_layout_session_runs_as_written() {
    let mut session = Session::start().await;
    let (failures, commands) = session
        .run_page("docs/redis-layout.md", &doc("redis-layout.md"))
        .await;
    assert!(
        failures.is_empty(),
        "{} of {commands} commands printed something else than the doc shows:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(commands > 0, "docs/redis-layout.md has no console session");
    println!("docs/redis-layout.md: {commands} commands ran as written");
}

#[test]
fn normalize_replaces_only_what_differs_between_runs() {
    let (line, longs) = normalize(
        "team-1  sbx-3  kill      1796280503428210  killing  48213-5f0c2a9e13b7/2   4.4s     9m55s   0",
    );
    assert_eq!(line, "team-1 sbx-3 kill <n> killing <holder> <dur> <dur> 0");
    assert_eq!(longs, ["1796280503428210"]);
    assert_eq!(
        normalize("begin_pause  269ee9e586cb4019ac5ccfa357a0e4e3dc19d122  21035  /tmp/x.lua").0,
        "begin_pause <sha> <k> /tmp/x.lua"
    );
    assert_eq!(
        normalize("in 59m54s, expires in 23h59m").0,
        "in <dur>, expires in <dur>"
    );
    // Words that merely contain digits or units stay.
    assert_eq!(
        normalize("sbx-1 s2 team-2 2 places v1-holder/s2").0,
        "sbx-1 s2 team-2 2 places v1-holder/s2"
    );
}
