//! Writing results to stdout. A reader that goes away (`sandboxctl list |
//! head`) ends the command quietly instead of panicking in `println!`.
//! And how a command ended ([`Verdict`]), which main turns into the exit
//! status.

use std::io::Write;

use serde::Serialize;

/// How a command ended, when it did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Did what was asked.
    Done,
    /// Ran, but found what it was asked to check wrong (an invariant
    /// violated, a script missing, a repair refused); already reported.
    Failed,
}

/// Writes `text` to stdout and flushes it.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Writes `value` as pretty JSON and a newline.
pub fn emit_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    emit(&text)
}

/// Writes `value` as one line of JSON (for streams such as `watch`).
pub fn emit_json_line<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string(value)?;
    text.push('\n');
    emit(&text)
}

/// Whether `e` is stdout's reader having gone away.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// An error and its causes on one line, each cause once: the library's
/// errors repeat their source in their own message, which `{:#}` would
/// print twice.
pub fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let message = cause.to_string();
        if text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}
