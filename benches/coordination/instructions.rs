//! Instructions Redis executes per transition, per side, counted with
//! callgrind: deterministic where timings drift. The counting is
//! `lua_cost.py` (it runs a private `redis-server` under valgrind and
//! drives every side's commands, as their headers say); this module writes
//! the library's assembled scripts where it reads them (`--dump-scripts`),
//! runs it and reads its machine-readable lines.

use std::path::Path;
use std::process::Command;

use sandbox_coordinator::Lifecycle;
use sandbox_coordinator::scripts::{ScriptOptions, assemble};

use crate::result::Result;
use crate::side::Side;

/// Instructions per call of one side's two steps.
#[derive(Debug, Clone, Copy, Default)]
pub struct Steps {
    /// begin (the reference: lock, reads, write, release).
    pub begin: f64,
    /// finish (the reference: the completion callback).
    pub finish: f64,
}

impl Steps {
    pub fn transition(&self) -> f64 {
        self.begin + self.finish
    }
}

/// What `lua_cost.py --machine` reported.
#[derive(Debug, Clone, Default)]
pub struct Instructions {
    /// Transitions per side.
    pub n: usize,
    /// Per side, in [`Side::ALL`] order.
    pub sides: [Steps; 4],
    /// The command the numbers come from.
    pub command: String,
}

impl Instructions {
    pub fn side(&self, side: Side) -> Steps {
        self.sides[side as usize]
    }
}

/// Writes every script of `assemble(&Lifecycle::sandbox(),
/// ScriptOptions::default())` to `dir` as `<name>.lua` (what `sandboxctl
/// scripts --dump DIR` is to write). Returns how many.
pub fn dump_scripts(dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir)?;
    let scripts = assemble(&Lifecycle::sandbox(), ScriptOptions::default());
    for s in &scripts {
        std::fs::write(dir.join(format!("{}.lua", s.name())), s.source())?;
    }
    Ok(scripts.len())
}

/// Runs `lua_cost.py` on freshly dumped scripts, `n` transitions per side.
pub fn measure(n: usize) -> Result<Instructions> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("coordination");
    let dir = std::env::temp_dir().join(format!("sbx-bench-scripts-{}", std::process::id()));
    dump_scripts(&dir)?;
    let out = Command::new("python3")
        .arg(here.join("lua_cost.py"))
        .arg("--scripts")
        .arg(&dir)
        .arg("-n")
        .arg(n.to_string())
        .arg("--machine")
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let out = out.map_err(|e| format!("cannot run python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "lua_cost.py failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    let mut result = Instructions {
        n,
        command: format!(
            "cargo bench --bench coordination -- --dump-scripts DIR && \
             python3 benches/coordination/lua_cost.py --scripts DIR -n {n}"
        ),
        ..Default::default()
    };
    let mut seen = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "instr <side> <begin|finish> <instructions per call>"
        let w: Vec<&str> = line.split_whitespace().collect();
        let [tag, side, step, value] = w[..] else {
            continue;
        };
        if tag != "instr" {
            continue;
        }
        let Some(side) = Side::ALL.iter().find(|s| s.key() == side) else {
            continue;
        };
        let value: f64 = value.parse()?;
        let steps = &mut result.sides[*side as usize];
        match step {
            "begin" => steps.begin = value,
            "finish" => steps.finish = value,
            _ => continue,
        }
        seen += 1;
    }
    if seen != 2 * Side::ALL.len() {
        return Err(format!("lua_cost.py gave {seen} of {} figures", 2 * Side::ALL.len()).into());
    }
    Ok(result)
}
