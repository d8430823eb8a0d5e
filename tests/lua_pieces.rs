//! The shared Lua pieces (`lua/include/*.lua`) are functions that take
//! what they touch: no piece reads a script's inputs (`KEYS`, `ARGV`) or a
//! name a script binds from them (`REC`, `TP`, `ID`, `HOLDER`, …), so each
//! piece can be read, and called, on its own.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

fn lua_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/lua"))
}

/// The code of a Lua source, comments blanked.
fn code(source: &str) -> String {
    let mut block = false;
    let mut out = String::new();
    for line in source.lines() {
        if block {
            block = !line.contains("]]");
            out.push('\n');
            continue;
        }
        if line.trim_start().starts_with("--[[") {
            block = !line.contains("]]");
            out.push('\n');
            continue;
        }
        out.push_str(line.split_once("--").map_or(line, |(code, _)| code));
        out.push('\n');
    }
    out
}

/// The words of `code` (identifiers, outside strings).
fn words(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut quote = None;
    let mut word = String::new();
    for c in code.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c.is_ascii_alphanumeric() || c == '_' => word.push(c),
            None => {
                if !word.is_empty() {
                    out.insert(std::mem::take(&mut word));
                }
            }
        }
        if quote.is_some() && !word.is_empty() {
            out.insert(std::mem::take(&mut word));
        }
    }
    out.extend((!word.is_empty()).then_some(word));
    out
}

/// The constants the scripts bind from their inputs (`local A, B =
/// KEYS[1], ARGV[2]`), with the script that binds each.
fn script_inputs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(lua_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "lua") {
            continue;
        }
        let source = fs::read_to_string(&path).unwrap();
        for line in code(&source).lines() {
            let Some((names, values)) = line.strip_prefix("local ").and_then(|l| l.split_once('='))
            else {
                continue;
            };
            if values.contains("KEYS[") || values.contains("ARGV[") {
                // The scripts' inputs are upper-case constants; a lower-case
                // local read from KEYS in a script's body is its own.
                let constants = names
                    .split(',')
                    .map(str::trim)
                    .filter(|n| n.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
                for name in constants {
                    let script = path.file_name().unwrap().to_string_lossy().into_owned();
                    out.push((name.to_string(), script));
                }
            }
        }
    }
    out
}

#[test]
fn no_piece_reads_a_scripts_inputs() {
    let inputs = script_inputs();
    assert!(
        inputs.iter().any(|(n, _)| n == "TP") && inputs.iter().any(|(n, _)| n == "REC"),
        "the scripts' inputs were found: {inputs:?}"
    );
    let mut read = Vec::new();
    for entry in fs::read_dir(lua_dir().join("include")).unwrap() {
        let path = entry.unwrap().path();
        let piece = path.file_name().unwrap().to_string_lossy().into_owned();
        let used = words(&code(&fs::read_to_string(&path).unwrap()));
        for global in ["KEYS", "ARGV"] {
            if used.contains(global) {
                read.push(format!("{piece} reads {global}"));
            }
        }
        for (name, script) in &inputs {
            if used.contains(name) {
                read.push(format!("{piece} reads {name} (bound by {script})"));
            }
        }
    }
    read.sort();
    read.dedup();
    assert!(
        read.is_empty(),
        "pieces that read a script's inputs:\n{}",
        read.join("\n")
    );
}

#[test]
fn words_skip_strings_and_comments() {
    let c = code("local a = TP .. 'rec:' -- ID here\n--[[ REC\n]]\nx(\"ID\", tp)");
    let w = words(&c);
    assert!(w.contains("TP") && w.contains("tp") && w.contains("x"));
    assert!(!w.contains("ID") && !w.contains("REC") && !w.contains("rec"));
}
