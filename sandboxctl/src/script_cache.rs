//! `scripts`: the Lua scripts as a coordinator with `--lifecycle` assembles
//! them, their SHA1s (computed with sha1_smol, as `EVALSHA` needs them) and
//! whether the server's script cache holds them. `--load` preloads them
//! with `SCRIPT LOAD` and checks the server computed the same SHA1;
//! `--dump DIR` writes each to `DIR/<name>.lua`, byte for byte the text
//! whose SHA1 the coordinator calls, so `redis-cli --eval` runs exactly
//! what the library runs. Talks to Redis directly: building a coordinator
//! would load the scripts and hide what the cache held.

use std::path::{Path, PathBuf};

use anyhow::Context;
use sandbox_coordinator::Lifecycle;
use sandbox_coordinator::scripts::{Script, ScriptOptions};
use serde::Serialize;

use crate::output::Verdict;
use crate::output::{emit, emit_json};
use crate::server::Server;
use crate::table::Table;

/// One script, as printed in JSON.
#[derive(Debug, Serialize)]
pub struct ScriptReport {
    pub name: String,
    pub sha1: String,
    pub bytes: usize,
    /// Whether `SCRIPT EXISTS` found it (after `--load`, if given).
    pub cached: bool,
    /// What `SCRIPT LOAD` replied (with `--load`).
    pub loaded_sha1: Option<String>,
}

/// One script written by `--dump`, as printed in JSON.
#[derive(Debug, Serialize)]
pub struct DumpReport {
    pub name: String,
    pub sha1: String,
    pub bytes: usize,
    pub path: PathBuf,
}

/// Every script a coordinator with `lifecycle` and the builder's default
/// settings assembles (single server: `PUBLISH`).
fn assembled(lifecycle: &Lifecycle) -> Vec<Script> {
    sandbox_coordinator::scripts::assemble(lifecycle, ScriptOptions::default())
}

/// Writes each script to `dir/<name>.lua` (creating `dir`), overwriting.
fn dump(scripts: &[Script], dir: &Path) -> anyhow::Result<Vec<DumpReport>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    scripts
        .iter()
        .map(|s| {
            let path = dir.join(format!("{}.lua", s.name()));
            std::fs::write(&path, s.source())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(DumpReport {
                name: s.name().to_string(),
                sha1: s.sha().to_string(),
                bytes: s.source().len(),
                path,
            })
        })
        .collect()
}

fn dump_text(written: &[DumpReport], dir: &Path) -> String {
    let mut table = Table::new(&["NAME", "SHA1", "BYTES", "FILE"]).right_align(&[2]);
    for w in written {
        table.row(vec![
            w.name.clone(),
            w.sha1.clone(),
            w.bytes.to_string(),
            w.path.display().to_string(),
        ]);
    }
    let mut text = table.render();
    text.push_str(&format!(
        "wrote {} scripts to {} (run one with `redis-cli --eval FILE KEYS... , ARGS...`; \
         each header lists its KEYS and ARGV)\n",
        written.len(),
        dir.display()
    ));
    text
}

/// `sandboxctl scripts --dump DIR` alone: writes the scripts, no Redis.
pub fn dump_only(lifecycle: &Lifecycle, dir: &Path, json: bool) -> anyhow::Result<Verdict> {
    let written = dump(&assembled(lifecycle), dir)?;
    if json {
        emit_json(&written)?;
    } else {
        emit(&dump_text(&written, dir))?;
    }
    Ok(Verdict::Done)
}

/// `sandboxctl scripts [--load] [--check] [--dump DIR]`.
pub async fn scripts(
    server: &Server,
    load: bool,
    check: bool,
    dump_dir: Option<&Path>,
    json: bool,
) -> anyhow::Result<Verdict> {
    let scripts = assembled(server.lifecycle());
    if let Some(dir) = dump_dir {
        let written = dump(&scripts, dir)?;
        // The table below carries the SHA1s; say only where they went (on
        // stderr, so --json stays one document).
        eprintln!(
            "sandboxctl: wrote {} scripts to {}",
            written.len(),
            dir.display()
        );
    }
    let mut conn = server.connection().await?;
    let mut loaded = Vec::with_capacity(scripts.len());
    for script in &scripts {
        if !load {
            loaded.push(None);
            continue;
        }
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(script.source())
            .query_async(&mut conn)
            .await
            .with_context(|| format!("SCRIPT LOAD {}.lua", script.name()))?;
        loaded.push(Some(sha));
    }
    let mut exists = redis::cmd("SCRIPT");
    exists.arg("EXISTS");
    for script in &scripts {
        exists.arg(script.sha());
    }
    let cached: Vec<bool> = exists
        .query_async(&mut conn)
        .await
        .context("SCRIPT EXISTS")?;

    let reports: Vec<ScriptReport> = scripts
        .iter()
        .zip(cached)
        .zip(loaded)
        .map(|((s, cached), loaded_sha1)| ScriptReport {
            name: s.name().to_string(),
            sha1: s.sha().to_string(),
            bytes: s.source().len(),
            cached,
            loaded_sha1,
        })
        .collect();
    let mismatched: Vec<&ScriptReport> = reports
        .iter()
        .filter(|r| r.loaded_sha1.as_ref().is_some_and(|l| *l != r.sha1))
        .collect();
    let missing = reports.iter().filter(|r| !r.cached).count();

    if json {
        emit_json(&reports)?;
    } else {
        let mut table = Table::new(&["NAME", "SHA1", "BYTES", "CACHED"]).right_align(&[2]);
        for r in &reports {
            table.row(vec![
                r.name.clone(),
                r.sha1.clone(),
                r.bytes.to_string(),
                if r.cached { "yes" } else { "no" }.into(),
            ]);
        }
        let mut text = table.render();
        text.push_str(&format!(
            "{} of {} scripts cached on the server{}\n",
            reports.len() - missing,
            reports.len(),
            if load { " (after SCRIPT LOAD)" } else { "" }
        ));
        emit(&text)?;
    }
    for r in &mismatched {
        eprintln!(
            "sandboxctl: SCRIPT LOAD of {}.lua returned {}, but this build computes {}",
            r.name,
            r.loaded_sha1.as_deref().unwrap_or(""),
            r.sha1
        );
    }
    if check && missing > 0 {
        eprintln!(
            "sandboxctl: {missing} script(s) not cached; `sandboxctl scripts --load` loads them \
             (the coordinator also reloads a missing script on its first use)"
        );
    }
    Ok(if !mismatched.is_empty() || (check && missing > 0) {
        Verdict::Failed
    } else {
        Verdict::Done
    })
}
