//! The house rules, checked on the source text: no import circle in any
//! crate of the workspace (between modules, nor between the top-level
//! modules that hold them), nothing below the façade imports it, and no
//! source file of the library, `sandboxctl` or `sandbox-api` is over 600
//! lines (CONTRIBUTING.md, "Layout of the code").
//!
//! A module is a file (`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; a
//! `#[path]` module is its declaring module's child). Module `m` depends on
//! module `n` when `m`'s code (comments aside) names `n` or an item in it
//! through a `crate::` path (use-trees included), a `super::` path, a path
//! starting at one of `m`'s own child modules (a parent calling into a
//! child), or, in a crate root, a `use` of a top-level module. An item
//! defined in a crate root (`crate::Result` in `main.rs`) is the root
//! module's, so a module using it depends on the root. The `mod`
//! declarations themselves are the tree, not dependencies.
//!
//! `LAYOUT_ROOT=<dir>` checks another checkout (e.g. an older commit).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's modules: path segments → source text.
type Modules = BTreeMap<Vec<String>, String>;
/// Dependencies: module → the modules it names.
type Graph = BTreeMap<Vec<String>, BTreeSet<Vec<String>>>;

const MAX_LINES: usize = 600;

fn workspace() -> PathBuf {
    std::env::var_os("LAYOUT_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Every crate of the workspace: (name, directory of its root file).
fn crates() -> Vec<(&'static str, PathBuf)> {
    let ws = workspace();
    vec![
        ("sandbox-coordinator", ws.join("src")),
        ("sandboxctl", ws.join("sandboxctl/src")),
        ("sandbox-api", ws.join("sandbox-api/src")),
        ("bench coordination", ws.join("benches/coordination")),
    ]
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// Reads a crate's modules, placing `#[path = "x.rs"] mod name;` files
/// under their declaring module.
fn read_crate(root: &Path) -> Modules {
    let mut files = Vec::new();
    rs_files(root, &mut files);
    // (declaring file, module name) of every `#[path]` file.
    let mut declared: BTreeMap<PathBuf, (PathBuf, String)> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("#[path = \"") {
            rest = &rest[at + 10..];
            let Some(end) = rest.find('"') else { break };
            let target = file.parent().unwrap().join(&rest[..end]);
            let Some(decl) = rest.find("mod ") else { break };
            let name: String = rest[decl + 4..]
                .chars()
                .take_while(|c| is_ident(*c))
                .collect();
            declared.insert(target, (file.clone(), name));
        }
    }
    fn module(
        root: &Path,
        file: &Path,
        declared: &BTreeMap<PathBuf, (PathBuf, String)>,
    ) -> Vec<String> {
        match declared.get(file) {
            Some((parent, name)) => {
                let mut m = module(root, parent, declared);
                m.push(name.clone());
                m
            }
            None => module_of(root, file),
        }
    }
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            (module(root, f, &declared), strip_comments(&text))
        })
        .collect()
}

/// The text without `//` comments (doc comments included: an intra-doc
/// link is no dependency).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(at) => &l[..at],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The paths of a use-tree or expression path starting at `s` (after a
/// `crate::` or the like), each as segments after `prefix`.
fn paths_at(s: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut parts = prefix;
    let mut i = 0;
    let b = s.as_bytes();
    loop {
        let ident: String = s[i..].chars().take_while(|c| is_ident(*c)).collect();
        if !ident.is_empty() {
            i += ident.len();
            if ident != "self" {
                parts.push(ident);
            }
            if s[i..].starts_with("::") {
                i += 2;
                continue;
            }
            out.push(parts);
            return i;
        }
        if i < b.len() && b[i] == b'{' {
            i += 1;
            loop {
                while i < b.len() && (b[i] as char).is_whitespace() || i < b.len() && b[i] == b',' {
                    i += 1;
                }
                if i >= b.len() || b[i] == b'}' {
                    out.push(parts);
                    return i + 1;
                }
                i += paths_at(&s[i..], parts.clone(), out);
                let rest = &s[i..];
                if let Some(alias) = rest.trim_start().strip_prefix("as ") {
                    let alias = alias.trim_start();
                    let name = alias.chars().take_while(|c| is_ident(*c)).count();
                    i += rest.len() - alias.len() + name;
                }
            }
        }
        out.push(parts);
        return i;
    }
}

/// Where `text` (of module `module`) points: every path it names.
fn named_paths(module: &[String], text: &str, modules: &Modules) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let starts = |needle: &str| -> Vec<usize> {
        text.match_indices(needle)
            .map(|(at, _)| at)
            .filter(|&at| {
                !text[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| is_ident(c) || c == ':')
            })
            .collect()
    };
    for at in starts("crate::") {
        paths_at(&text[at + 7..], Vec::new(), &mut out);
    }
    for at in starts("super::") {
        // Inside an inline module (`mod tests { use super::*; }`), `super`
        // is this file's module: indented `use` lines are skipped.
        let line_start = text[..at].rfind('\n').map_or(0, |n| n + 1);
        let before = &text[line_start..at];
        if before.starts_with(char::is_whitespace) && before.contains("use") {
            continue;
        }
        // `super::super::x` climbs once per `super`.
        let mut rest = &text[at..];
        let mut up = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            rest = r;
            up += 1;
        }
        if up > module.len() {
            continue;
        }
        let ancestor = module[..module.len() - up].to_vec();
        paths_at(rest, ancestor, &mut out);
    }
    // A parent calling into its own children (a crate root's `use` too).
    for (other, _) in modules.iter() {
        let child = other.len() == module.len() + 1 && other[..module.len()] == *module;
        if !child {
            continue;
        }
        let name = other.last().unwrap();
        for at in starts(&format!("{name}::")) {
            let mut path = module.to_vec();
            path.push(name.clone());
            paths_at(&text[at + name.len() + 2..], path, &mut out);
        }
    }
    out
}

/// The module a path names: its longest prefix that is a module (the root
/// if none: an item defined or re-exported there).
fn resolve(path: &[String], modules: &Modules) -> Vec<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains_key(p))
        .unwrap_or_default()
}

fn graph(modules: &Modules) -> Graph {
    modules
        .iter()
        .map(|(module, text)| {
            let deps = named_paths(module, text, modules)
                .iter()
                .map(|p| resolve(p, modules))
                .filter(|d| d != module)
                .collect();
            (module.clone(), deps)
        })
        .collect()
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// One circle of the graph, if any, as its modules in order.
fn circle(g: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        m: &Vec<String>,
        g: &Graph,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        marks.insert(m.clone(), Mark::Open);
        stack.push(m.clone());
        for d in g.get(m).into_iter().flatten() {
            match marks.get(d).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let from = stack.iter().position(|s| s == d).unwrap();
                    let mut c: Vec<String> = stack[from..].iter().map(|s| name(s)).collect();
                    c.push(name(d));
                    return Some(c);
                }
                Mark::New => {
                    if let Some(c) = visit(d, g, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(m.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for m in g.keys() {
        if marks.get(m).copied().unwrap_or(Mark::New) == Mark::New
            && let Some(c) = visit(m, g, &mut marks, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

/// The graph between top-level modules: `a::x -> b::y` is `a -> b`
/// (the crate root is `[]`); a module's edges to itself are dropped.
fn top_level(g: &Graph) -> Graph {
    let top = |m: &Vec<String>| m.first().cloned().into_iter().collect::<Vec<String>>();
    let mut out = Graph::new();
    for (m, deps) in g {
        let from = top(m);
        let to: BTreeSet<Vec<String>> = deps.iter().map(top).filter(|d| *d != from).collect();
        out.entry(from).or_default().extend(to);
    }
    out
}

fn modules_of(sources: &[(&str, &str)]) -> Modules {
    sources
        .iter()
        .map(|(m, text)| {
            let path = if m.is_empty() {
                Vec::new()
            } else {
                m.split("::").map(str::to_string).collect()
            };
            (path, strip_comments(text))
        })
        .collect()
}

#[test]
fn the_checker_finds_circles_through_crate_super_and_child_paths() {
    // a → b through `crate::`, b → a through a use-tree.
    let g = graph(&modules_of(&[
        ("", "mod a;\nmod b;"),
        ("a", "use crate::b::Thing;"),
        ("b", "use crate::{a::{self, Other as O}, c};"),
    ]));
    assert!(circle(&g).is_some(), "{g:?}");
    // A child using its parent's item, the parent calling into the child.
    let g = graph(&modules_of(&[
        ("", "mod p;"),
        ("p", "mod q;\npub struct S;\nfn f() { q::go() }"),
        ("p::q", "use super::S;\npub fn go() {}"),
    ]));
    assert_eq!(
        circle(&g),
        Some(vec!["p".into(), "p::q".into(), "p".into()])
    );
    // A module using an item of the crate root, which calls into it.
    let g = graph(&modules_of(&[
        (
            "",
            "mod m;\npub type Result<T> = std::result::Result<T, ()>;\nfn main() { m::run(); }",
        ),
        ("m", "use crate::Result;\npub fn run() {}"),
    ]));
    assert!(circle(&g).is_some(), "{g:?}");
    // One way only, comments and inline test modules aside: no circle.
    let g = graph(&modules_of(&[
        ("", "mod a;\nmod b;\npub use a::A;"),
        (
            "a",
            "use crate::b::B; // crate::a::A\n/// [`A`](crate::A)\npub struct A;",
        ),
        (
            "b",
            "pub struct B;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}",
        ),
    ]));
    assert_eq!(circle(&g), None, "{g:?}");
    // No circle between modules, one between the top-level modules that
    // hold them: a::x -> b, b -> a::y.
    let g = graph(&modules_of(&[
        ("", "mod a;\nmod b;"),
        ("a", "mod x;\nmod y;"),
        ("a::x", "use crate::b::B;"),
        ("a::y", "pub struct Y;"),
        ("b", "use crate::a::y::Y;\npub struct B;"),
    ]));
    assert_eq!(circle(&g), None, "{g:?}");
    assert_eq!(
        circle(&top_level(&g)),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}

#[test]
fn no_module_imports_another_in_a_circle() {
    for (krate, root) in crates() {
        let modules = read_crate(&root);
        assert!(!modules.is_empty(), "no sources under {}", root.display());
        let g = graph(&modules);
        let top = top_level(&g);
        // LAYOUT_GRAPH=1: the graph between top-level modules, printed.
        if std::env::var_os("LAYOUT_GRAPH").is_some() {
            for (from, to) in &top {
                let to: Vec<String> = to.iter().map(|d| name(d)).collect();
                println!("{krate}: {} -> {}", name(from), to.join(", "));
            }
        }
        if let Some(c) = circle(&g) {
            panic!("{krate}: import circle {}", c.join(" -> "));
        }
        // Nor between the top-level modules: each can be read (and
        // changed) with only what it points to.
        if let Some(c) = circle(&top) {
            panic!(
                "{krate}: import circle between top-level modules {}",
                c.join(" -> ")
            );
        }
    }
}

#[test]
fn nothing_below_the_facade_imports_it() {
    let (_, root) = &crates()[0];
    let modules = read_crate(root);
    let g = graph(&modules);
    let facade = vec!["coordinator".to_string()];
    let importers: Vec<String> = g
        .iter()
        .filter(|(m, deps)| !m.is_empty() && deps.contains(&facade))
        .map(|(m, _)| name(m))
        .collect();
    assert!(
        importers.is_empty(),
        "the façade is imported by {importers:?}"
    );
}

#[test]
fn no_source_file_is_over_600_lines() {
    let mut long = Vec::new();
    for (_, root) in crates().into_iter().take(3) {
        let mut files = Vec::new();
        rs_files(&root, &mut files);
        for f in files {
            let lines = std::fs::read_to_string(&f).unwrap().lines().count();
            if lines > MAX_LINES {
                long.push(format!("{} ({lines} lines)", f.display()));
            }
        }
    }
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}
