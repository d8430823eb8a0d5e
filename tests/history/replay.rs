//! Reads a history back from the text [`super::checker::render`] writes
//! (the soak's `target/soak-violations.txt`, a failing test's panic
//! message), so a history the checker rejected or could not decide can be
//! replayed as a test without re-running the race that produced it.
//!
//! One call per line:
//!
//! ```text
//!   [     0.000 ..      8.641 ms] t0     c0  Register { execution: "x-setup" } -> Created
//!   [   184.166 ..    197.212 ms] t71    c4  Begin { action: Snapshot, token: 9 } -> Started(986)
//!   [   190.000 ..    700.000 ms] t72    c4  Remove -> ? settled (connection reset)
//! ```
//!
//! Lines that do not start with `[` are skipped. Rendered histories already
//! hold the recorder's `Expire` entries, so begins come back without a
//! lease (the checker adds no second expiry).

use std::time::{Duration, Instant};

use super::model::{Op, Ret};
use super::recorder::Entry;

/// The entries of a rendered history, all on sandbox `sandbox`.
pub fn parse(text: &str, sandbox: &str) -> Result<Vec<Entry>, String> {
    let origin = Instant::now();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('[') {
            continue;
        }
        let entry =
            parse_line(line, sandbox, origin).map_err(|e| format!("line {}: {e}", n + 1))?;
        out.push(entry);
    }
    Ok(out)
}

fn parse_line(line: &str, sandbox: &str, origin: Instant) -> Result<Entry, String> {
    let (times, rest) = line[1..].split_once("ms]").ok_or("no `ms]`")?;
    let (from, to) = times.split_once("..").ok_or("no `..`")?;
    let at = |s: &str| -> Result<Instant, String> {
        let ms: f64 = s.trim().parse().map_err(|e| format!("time {s:?}: {e}"))?;
        Ok(origin + Duration::from_nanos((ms * 1e6).round() as u64))
    };
    let (thread, rest) = word(rest);
    let (coord, rest) = word(rest);
    let thread = Some(thread)
        .and_then(|t| t.strip_prefix('t'))
        .ok_or("no thread")?
        .parse()
        .map_err(|e| format!("thread: {e}"))?;
    let coordinator = match coord {
        "-" => usize::MAX,
        c => c
            .strip_prefix('c')
            .ok_or("coordinator")?
            .parse()
            .map_err(|e| format!("coordinator: {e}"))?,
    };
    let rest = rest.trim();
    let (op, ret) = rest.split_once(" -> ").ok_or("no ` -> `")?;
    let op = op_of(&Value::parse(op)?)?;
    let (ret, settled, error) = match ret.strip_prefix('?') {
        Some(unknown) => {
            let unknown = unknown.trim();
            let (settled, why) = match unknown.strip_prefix("settled") {
                Some(why) => (true, why.trim()),
                None => (false, unknown),
            };
            let why = why.trim_start_matches('(').trim_end_matches(')');
            (None, settled, Some(why.to_string()))
        }
        None => (Some(ret_of(&Value::parse(ret)?)?), false, None),
    };
    Ok(Entry {
        sandbox: sandbox.to_string(),
        thread,
        op,
        ret,
        invoked: at(from)?,
        returned: at(to)?,
        lease: None,
        error,
        coordinator,
        settled,
    })
}

/// The first whitespace-separated word of `s`, and what follows it.
fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    s.split_at(s.find(char::is_whitespace).unwrap_or(s.len()))
}

/// A value in Rust's `Debug` syntax, as far as the model's types need.
#[derive(Debug, PartialEq)]
enum Value {
    /// `Name`, `Name(x)` or `Name { k: v, .. }`; numbers are names too.
    Named {
        name: String,
        args: Vec<Value>,
        fields: Vec<(String, Value)>,
    },
    Str(String),
}

impl Value {
    fn parse(s: &str) -> Result<Value, String> {
        let mut p = Parser {
            s: s.as_bytes(),
            at: 0,
        };
        let v = p.value()?;
        p.skip_ws();
        if p.at != p.s.len() {
            return Err(format!("trailing text in {s:?}"));
        }
        Ok(v)
    }

    fn name(&self) -> Result<&str, String> {
        match self {
            Value::Named { name, .. } => Ok(name),
            Value::Str(s) => Err(format!("expected a name, found {s:?}")),
        }
    }

    fn str(&self) -> Result<&str, String> {
        match self {
            Value::Str(s) => Ok(s),
            other => Err(format!("expected a string, found {other:?}")),
        }
    }

    fn num(&self) -> Result<u64, String> {
        self.name()?.parse().map_err(|e| format!("number: {e}"))
    }

    fn arg(&self) -> Result<&Value, String> {
        match self {
            Value::Named { args, .. } if args.len() == 1 => Ok(&args[0]),
            other => Err(format!("expected one argument: {other:?}")),
        }
    }

    fn field(&self, key: &str) -> Result<&Value, String> {
        match self {
            Value::Named { fields, .. } => fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .ok_or_else(|| format!("no field {key}")),
            Value::Str(_) => Err(format!("no field {key} in a string")),
        }
    }

    fn parsed<T: std::str::FromStr<Err = String>>(&self) -> Result<T, String> {
        self.name()?.to_ascii_lowercase().parse()
    }
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.at < self.s.len() && self.s[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.at) == Some(&c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        self.skip_ws();
        let start = self.at;
        while self.at < self.s.len()
            && (self.s[self.at].is_ascii_alphanumeric() || self.s[self.at] == b'_')
        {
            self.at += 1;
        }
        if start == self.at {
            return Err(format!("expected a name at byte {start}"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.at]).into_owned())
    }

    fn value(&mut self) -> Result<Value, String> {
        self.skip_ws();
        if self.eat(b'"') {
            let mut out = Vec::new();
            loop {
                match self.s.get(self.at) {
                    None => return Err("unterminated string".into()),
                    Some(b'"') => {
                        self.at += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let c = *self.s.get(self.at + 1).ok_or("dangling escape")?;
                        out.push(match c {
                            b'n' => b'\n',
                            b't' => b'\t',
                            other => other,
                        });
                        self.at += 2;
                    }
                    Some(&c) => {
                        out.push(c);
                        self.at += 1;
                    }
                }
            }
            return Ok(Value::Str(String::from_utf8_lossy(&out).into_owned()));
        }
        let name = self.ident()?;
        let mut args = Vec::new();
        let mut fields = Vec::new();
        if self.eat(b'(') {
            loop {
                args.push(self.value()?);
                if self.eat(b')') {
                    break;
                }
                if !self.eat(b',') {
                    return Err(format!("expected `,` or `)` in {name}(..)"));
                }
            }
        } else if self.eat(b'{') {
            loop {
                if self.eat(b'}') {
                    break;
                }
                let key = self.ident()?;
                if !self.eat(b':') {
                    return Err(format!("expected `:` after {key}"));
                }
                fields.push((key, self.value()?));
                self.eat(b',');
            }
        }
        Ok(Value::Named { name, args, fields })
    }
}

fn op_of(v: &Value) -> Result<Op, String> {
    Ok(match v.name()? {
        "Begin" => Op::Begin {
            action: v.field("action")?.parsed()?,
            token: v.field("token")?.num()?,
        },
        "Finish" => Op::Finish {
            fence: v.field("fence")?.num()?,
            outcome: v.field("outcome")?.parsed()?,
            reason: v.field("reason")?.str()?.to_string(),
        },
        "Register" => Op::Register {
            execution: v.field("execution")?.str()?.to_string(),
        },
        "Remove" => Op::Remove,
        "Get" => Op::Get,
        "Expire" => Op::Expire {
            token: v.field("token")?.num()?,
        },
        "Cancel" => Op::Cancel {
            token: v.field("token")?.num()?,
            // Histories recorded before the reason was kept: "cancelled".
            reason: match v.field("reason") {
                Ok(r) => r.str()?.to_string(),
                Err(_) => "cancelled".to_string(),
            },
        },
        "Lose" => Op::Lose,
        other => return Err(format!("unknown operation {other}")),
    })
}

fn ret_of(v: &Value) -> Result<Ret, String> {
    Ok(match v.name()? {
        "Started" => Ret::Started(v.arg()?.num()?),
        "Joined" => Ret::Joined(v.arg()?.num()?),
        "Abandoned" => Ret::Abandoned(v.arg()?.num()?),
        "OutcomeUnknown" => Ret::OutcomeUnknown(v.arg()?.num()?),
        "Absorbed" => Ret::Absorbed(v.arg()?.parsed()?),
        "AlreadyInState" => Ret::AlreadyInState(v.arg()?.parsed()?),
        "Invalid" => Ret::Invalid(v.arg()?.parsed()?),
        "TransitionFailed" => Ret::TransitionFailed {
            fence: v.field("fence")?.num()?,
            reason: v.field("reason")?.str()?.to_string(),
        },
        "Resumed" => Ret::Resumed {
            previous: v.field("previous")?.str()?.to_string(),
        },
        "Record" => Ret::Record {
            state: v.field("state")?.parsed()?,
            execution: v.field("execution")?.str()?.to_string(),
            fence: v.field("fence")?.num()?,
            lease: match v.field("lease")? {
                Value::Named { name, .. } if name == "None" => None,
                some => Some(some.arg()?.num()?),
            },
        },
        "NotFound" => Ret::NotFound,
        "Timeout" => Ret::Timeout,
        "Finished" => Ret::Finished,
        "Fenced" => Ret::Fenced,
        "Created" => Ret::Created,
        "Existing" => Ret::Existing,
        "Busy" => Ret::Busy,
        "Exists" => Ret::Exists,
        "Removed" => Ret::Removed,
        "Done" => Ret::Done,
        other => return Err(format!("unknown answer {other}")),
    })
}
