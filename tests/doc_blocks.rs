//! Every code block of README.md and docs/*.md is checked by something:
//!
//! - `rust` blocks are doctests (src/lib.rs includes each page under
//!   `cfg(doctest)`; `ignore` is not allowed);
//! - `console` blocks are sessions that a test runs as written
//!   (sandboxctl/tests/operations_doc.rs for docs/operations.md and
//!   docs/redis-layout.md, sandbox-api/tests/http.rs for
//!   docs/example-server.md), and only those pages have them;
//! - the `toml` block of the README (the dependency line) names this
//!   crate's version, beside the minimum Rust version and the licence;
//! - `sh` blocks are commands too long to run in a test (a soak, a
//!   benchmark, a scratch copy of the repository) — except the fleet of
//!   docs/example-server.md, which sandbox-api/tests/http.rs runs — so
//!   each command is checked against the tree: a `make` line is run with
//!   `make -n`, a `cargo` line's packages, tests, benches and examples
//!   exist (and its test filter and bench options are in their sources),
//!   a script it runs exists, a `sed` edit finds the line it replaces;
//! - `text` blocks are recorded output, not code.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// README.md and every page of docs/, by path relative to the root.
fn pages() -> Vec<String> {
    let mut pages = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| {
            e.expect("a docs/ entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// A fenced block: its info string, the line of its opening fence, its
/// lines.
struct Block {
    lang: String,
    line: usize,
    body: Vec<String>,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (n, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(lang)) => {
                open = Some(Block {
                    lang: lang.trim().to_string(),
                    line: n + 1,
                    body: Vec::new(),
                })
            }
            (Some(_), Some(_)) => out.extend(open.take()),
            (Some(block), None) => block.body.push(line.to_string()),
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "an unclosed code block");
    out
}

/// Pages whose `console` blocks a test runs, and the test file that names
/// the page.
const SESSIONS: &[(&str, &str)] = &[
    ("docs/operations.md", "sandboxctl/tests/operations_doc.rs"),
    ("docs/redis-layout.md", "sandboxctl/tests/operations_doc.rs"),
    ("docs/example-server.md", "sandbox-api/tests/http.rs"),
];

/// `sh` blocks that a test runs as written: (page, index among the page's
/// `sh` blocks, the test file that runs it).
const RUN_SH: &[(&str, usize, &str)] =
    &[("docs/example-server.md", 0, "sandbox-api/tests/http.rs")];

#[test]
fn every_code_block_of_the_docs_is_compiled_run_or_checked() {
    let mut problems = Vec::new();
    for page in pages() {
        for block in blocks(&read(&page)) {
            let at = format!("{page}:{}", block.line);
            let words: Vec<&str> = block.lang.split(',').map(str::trim).collect();
            match words[0] {
                "rust" if words.contains(&"ignore") => {
                    problems.push(format!("{at}: an `ignore`d rust block is not compiled"))
                }
                "rust" | "sh" | "text" => {}
                "toml" if page == "README.md" => {}
                "console" => match SESSIONS.iter().find(|(p, _)| *p == page) {
                    Some((_, test)) => {
                        let name = page.trim_start_matches("docs/");
                        if !read(test).contains(name) {
                            problems.push(format!("{at}: {test} does not run {name}"));
                        }
                    }
                    None => problems.push(format!("{at}: a console block no test runs")),
                },
                other => problems.push(format!("{at}: a `{other}` block nothing checks")),
            }
        }
    }
    for (page, _, test) in RUN_SH {
        let name = page.trim_start_matches("docs/");
        assert!(read(test).contains(name), "{test} does not run {name}");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_install_section_names_this_crates_version_rust_version_and_licence() {
    let readme = read("README.md");
    let toml: Vec<Block> = blocks(&readme)
        .into_iter()
        .filter(|b| b.lang == "toml")
        .collect();
    assert_eq!(toml.len(), 1, "one toml block (the dependency line)");
    let body = toml[0].body.join("\n");
    let (major, minor) = {
        let mut parts = env!("CARGO_PKG_VERSION").split('.');
        (parts.next().unwrap(), parts.next().unwrap())
    };
    // Cargo's caret rule: "0.1" accepts 0.1.x, "1.2" accepts 1.x.
    let wanted = if major == "0" {
        format!("{}{major}.{minor}\"", "sandbox-coordinator = \"")
    } else {
        format!("{}{major}", "sandbox-coordinator = \"")
    };
    assert!(body.contains(&wanted), "{body}\nwants {wanted}");
    if readme.contains("#[tokio::main]") {
        for feature in ["\"macros\"", "\"rt-multi-thread\""] {
            assert!(body.contains(feature), "tokio needs {feature}:\n{body}");
        }
    }
    let msrv = format!(
        "Minimum Rust version **{}**",
        env!("CARGO_PKG_RUST_VERSION")
    );
    assert!(readme.contains(&msrv), "README.md wants {msrv:?}");
    let licence = format!("Licence **{}**", env!("CARGO_PKG_LICENSE"));
    assert!(readme.contains(&licence), "README.md wants {licence:?}");
}

/// A shell line split into words: double and single quotes group (and are
/// dropped), a `#` starting a word starts a comment.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                started = true;
            }
            None if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            None if c == '#' && !started => break,
            None => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// The commands of an `sh` block: continuation lines joined, split at
/// `&&`, `||`, `|`, `;`, a trailing `&` and parentheses dropped, leading
/// `NAME=value` assignments dropped (an assignment alone is no command).
fn commands(body: &[String]) -> Vec<Vec<String>> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in body {
        match line.trim_end().strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    let mut out = Vec::new();
    for line in joined {
        let mut command = Vec::new();
        for word in words(&line) {
            let word = word.trim_matches(|c| c == '(' || c == ')').to_string();
            if ["&&", "||", "|", ";", "&"].contains(&word.as_str()) {
                out.push(std::mem::take(&mut command));
            } else if !word.is_empty() {
                command.push(word);
            }
        }
        out.push(command);
    }
    out.into_iter()
        .map(|c: Vec<String>| {
            c.into_iter()
                .skip_while(|w| w.split_once('=').is_some_and(|(n, _)| is_name(n)))
                .collect::<Vec<_>>()
        })
        .filter(|c| !c.is_empty())
        .collect()
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Commands of shell plumbing, not of this repository: nothing to check.
const PLUMBING: &[&str] = &["cd", "rm", "mkdir", "tar", "export"];

/// The workspace's packages: name → directory.
fn packages() -> Vec<(String, PathBuf)> {
    ["", "sandboxctl", "sandbox-api", "benches"]
        .iter()
        .map(|dir| {
            let manifest = read(&Path::new(dir).join("Cargo.toml").to_string_lossy());
            let name = manifest
                .lines()
                .skip_while(|l| l.trim() != "[package]")
                .find_map(|l| l.strip_prefix("name = \""))
                .and_then(|l| l.strip_suffix('"'))
                .unwrap_or_else(|| panic!("{dir}/Cargo.toml names its package"))
                .to_string();
            (name, root().join(dir))
        })
        .collect()
}

/// The source of bench `name` (its file, or its directory when its main
/// file is `DIR/main.rs`).
fn bench_source(name: &str) -> Option<PathBuf> {
    let manifest = read("benches/Cargo.toml");
    let mut lines = manifest
        .lines()
        .skip_while(|l| *l != format!("name = \"{name}\""));
    lines.next()?;
    let path = lines
        .find_map(|l| l.strip_prefix("path = \""))?
        .trim_end_matches('"');
    let path = root().join("benches").join(path);
    Some(match path.file_name() {
        Some(f) if f == "main.rs" => path.parent()?.to_path_buf(),
        _ => path,
    })
}

/// The text of a file, or of every file of a directory.
fn source_text(path: &Path) -> String {
    if path.is_dir() {
        let mut text = String::new();
        for entry in std::fs::read_dir(path).expect("a source directory") {
            let p = entry.expect("an entry").path();
            if p.extension().is_some_and(|e| e == "rs") {
                text.push_str(&std::fs::read_to_string(&p).expect("a source file"));
            }
        }
        text
    } else {
        std::fs::read_to_string(path).unwrap_or_default()
    }
}

/// What is wrong with a `cargo` command, if anything.
fn check_cargo(args: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let (before, after) = match args.iter().position(|a| a == "--") {
        Some(at) => (&args[..at], &args[at + 1..]),
        None => (args, &[][..]),
    };
    let packages = packages();
    let mut package = root();
    let mut test_file = None;
    let mut bench = None;
    let mut positional = Vec::new();
    let mut i = 0;
    while i < before.len() {
        let value = before.get(i + 1).cloned().unwrap_or_default();
        match before[i].as_str() {
            "-p" | "--package" => {
                match packages.iter().find(|(name, _)| *name == value) {
                    Some((_, dir)) => package = dir.clone(),
                    None => problems.push(format!("no package {value}")),
                }
                i += 1;
            }
            "--test" => {
                let file = package.join("tests").join(format!("{value}.rs"));
                if !file.exists() {
                    problems.push(format!("no test {value} ({})", file.display()));
                }
                test_file = Some(file);
                i += 1;
            }
            "--bench" => {
                match bench_source(&value) {
                    Some(source) => bench = Some(source),
                    None => problems.push(format!("no bench {value} in benches/Cargo.toml")),
                }
                i += 1;
            }
            "--example" => {
                if !root().join("examples").join(format!("{value}.rs")).exists() {
                    problems.push(format!("no example {value}"));
                }
                i += 1;
            }
            word if !word.starts_with('-') => positional.push(word.to_string()),
            _ => {}
        }
        i += 1;
    }
    // `cargo nextest run FILTER`, `cargo test FILTER`: the filter names a
    // test of the --test file.
    let filters = positional
        .iter()
        .skip_while(|w| ["nextest", "run", "test"].contains(&w.as_str()))
        .filter(|w| !w.starts_with('<'));
    if let Some(file) = &test_file {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for filter in filters {
            if !text.contains(&format!("fn {filter}")) {
                problems.push(format!("no test {filter} in {}", file.display()));
            }
        }
    }
    // A bench's options are in its source (`--dump-scripts` is clap's
    // `dump_scripts`).
    if let Some(source) = &bench {
        let text = source_text(source);
        for option in after.iter().filter_map(|a| a.strip_prefix("--")) {
            if !text.contains(&format!("--{option}")) && !text.contains(&option.replace('-', "_")) {
                problems.push(format!("no option --{option} in {}", source.display()));
            }
        }
    }
    problems
}

/// What is wrong with one command of an `sh` block, if anything.
fn check(command: &[String]) -> Vec<String> {
    let args = &command[1..];
    match command[0].as_str() {
        "make" => {
            let out = Command::new("make")
                .arg("-n")
                .args(args)
                .current_dir(root())
                .output()
                .expect("make runs");
            if out.status.success() {
                Vec::new()
            } else {
                vec![format!(
                    "make -n fails: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )]
            }
        }
        "cargo" => check_cargo(args),
        "python3" => {
            let script = &args[0];
            let Ok(text) = std::fs::read_to_string(root().join(script)) else {
                return vec![format!("no script {script}")];
            };
            args[1..]
                .iter()
                .filter(|a| a.starts_with('-') && a.len() > 1)
                .filter(|option| !text.contains(option.as_str()))
                .map(|option| format!("no option {option} in {script}"))
                .collect()
        }
        // `sed -i "s/^LINE$/.../" FILE`: FILE has LINE.
        "sed" => {
            let (Some(edit), Some(file)) = (args.iter().find(|a| a.starts_with("s/")), args.last())
            else {
                return vec!["a sed that is not `sed -i s/^LINE$/.../ FILE`".into()];
            };
            let line = edit[2..].split('/').next().unwrap_or_default();
            let line = line.trim_start_matches('^').trim_end_matches('$');
            let text = std::fs::read_to_string(root().join(file)).unwrap_or_default();
            if text.lines().any(|l| l == line) {
                Vec::new()
            } else {
                vec![format!("{file} has no line {line:?}")]
            }
        }
        word if PLUMBING.contains(&word) => Vec::new(),
        word => vec![format!("`{word}`: no check for this command")],
    }
}

#[test]
fn the_docs_commands_name_targets_files_and_lines_that_exist() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let sh = blocks(&read(&page))
            .into_iter()
            .filter(|b| b.lang == "sh")
            .enumerate();
        for (index, block) in sh {
            if RUN_SH.iter().any(|(p, i, _)| *p == page && *i == index) {
                continue;
            }
            for command in commands(&block.body) {
                checked += 1;
                for problem in check(&command) {
                    problems.push(format!(
                        "{page}:{}: `{}`: {problem}",
                        block.line,
                        command.join(" ")
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked > 0, "no command checked");
    println!("{checked} commands checked");
}

#[test]
fn commands_are_split_like_a_shell_would() {
    let body = [
        "REPO=$PWD   # a checkout".to_string(),
        "rm -rf /tmp/b && cd \"$REPO\" && tar -cf - . | (cd /tmp/b && tar xf -)".to_string(),
        "A=1 B=2 \\".to_string(),
        "  cargo nextest run --test t name   # comment".to_string(),
        "sed -i \"s/^a = '' b$/c # d/\" f".to_string(),
    ];
    let got: Vec<String> = commands(&body).iter().map(|c| c.join(" ")).collect();
    assert_eq!(
        got,
        [
            "rm -rf /tmp/b",
            "cd $REPO",
            "tar -cf - .",
            "cd /tmp/b",
            "tar xf -",
            "cargo nextest run --test t name",
            "sed -i s/^a = '' b$/c # d/ f",
        ]
    );
}

/// User docs are about the library as it is: its history (fixes, issue
/// numbers) is in CHANGELOG.md.
#[test]
fn the_user_docs_cite_no_issue_numbers() {
    let mut found = Vec::new();
    for page in pages() {
        for (n, line) in read(&page).lines().enumerate() {
            let lower = line.to_lowercase();
            let cites = lower.match_indices("issue").any(|(at, _)| {
                let rest = lower[at + "issue".len()..].trim_start_matches([' ', '#']);
                rest.starts_with(|c: char| c.is_ascii_digit())
            });
            if cites {
                found.push(format!("{page}:{}: {line}", n + 1));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
