//! The limits of every number that crosses into Redis, checked in Rust
//! before anything is sent: Lua numbers are doubles (integers exact up to
//! 2^53), and a script that fails on an argument half-way would leave a
//! partial write. Waits are local (tokio instants), so "forever" there
//! saturates instead of being refused.

use std::time::{Duration, UNIX_EPOCH};

use tokio::time::Instant;

use crate::error::Error;
use crate::record::MAX_INT;
use crate::sandbox::EndTime;

/// The longest duration that goes into a script, in ms: 2^50 ms (about
/// 35,700 years). Added to the server's now (about 2^41 ms), it stays below
/// 2^53, where Lua's numbers are still exact.
pub const MAX_DURATION_MS: u64 = 1 << 50;

/// `d` in whole milliseconds, refused outside `min..=MAX_DURATION_MS`.
pub(crate) fn duration_ms(what: &'static str, d: Duration, min: Duration) -> Result<u64, Error> {
    let bad = |why: String| Error::InvalidInput {
        what,
        value: format!("{d:?}"),
        why,
    };
    if d < min {
        return Err(bad(format!("is shorter than {min:?}")));
    }
    match u64::try_from(d.as_millis()) {
        Ok(ms) if ms <= MAX_DURATION_MS => Ok(ms),
        _ => Err(bad(format!(
            "is longer than {MAX_DURATION_MS} ms, the longest a script can add to the server's clock"
        ))),
    }
}

/// The end time as the scripts take it: mode and milliseconds.
pub(crate) struct EndArg {
    pub mode: &'static str,
    pub ms: String,
}

/// The end time as the scripts take it.
pub(crate) fn end_arg(end: EndTime) -> Result<EndArg, Error> {
    match end {
        EndTime::In(d) => Ok(EndArg {
            mode: "in",
            ms: duration_ms("end time", d, Duration::ZERO)?.to_string(),
        }),
        EndTime::At(t) => {
            let bad = |why: &str| Error::InvalidInput {
                what: "end time",
                value: format!("{t:?}"),
                why: why.to_string(),
            };
            let d = t
                .duration_since(UNIX_EPOCH)
                .map_err(|_| bad("is before the Unix epoch"))?;
            match u64::try_from(d.as_millis()) {
                Ok(ms) if ms <= MAX_INT - MAX_DURATION_MS => Ok(EndArg {
                    mode: "at",
                    ms: ms.to_string(),
                }),
                _ => Err(bad("is too far in the future")),
            }
        }
    }
}

/// `now + d`, or `None` ("no deadline") when that is beyond what an
/// `Instant` can hold.
pub(crate) fn deadline(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_add(d)
}

/// A count argument (`limit`, page size), refused outside `1..=max`.
pub(crate) fn count(what: &'static str, n: usize, max: usize) -> Result<usize, Error> {
    if n == 0 || n > max {
        return Err(Error::InvalidInput {
            what,
            value: n.to_string(),
            why: format!("must be 1 to {max}"),
        });
    }
    Ok(n)
}

/// A team limit as the scripts take it (at most 2^53 - 1).
pub(crate) fn team_limit(limit: usize) -> Result<String, Error> {
    if limit as u64 > MAX_INT {
        return Err(Error::InvalidInput {
            what: "team limit",
            value: limit.to_string(),
            why: "is larger than 2^53 - 1".into(),
        });
    }
    Ok(limit.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forever_is_refused_where_redis_keeps_it_and_saturates_where_it_is_waited() {
        assert!(duration_ms("lease", Duration::MAX, Duration::ZERO).is_err());
        assert!(
            duration_ms(
                "lease",
                Duration::from_secs(u64::MAX / 1000),
                Duration::ZERO
            )
            .is_err()
        );
        assert_eq!(
            duration_ms(
                "lease",
                Duration::from_millis(MAX_DURATION_MS),
                Duration::ZERO
            )
            .unwrap(),
            MAX_DURATION_MS
        );
        assert!(duration_ms("lease", Duration::from_millis(9), Duration::from_millis(10)).is_err());
        assert_eq!(deadline(Instant::now(), Duration::MAX), None);
        assert!(
            end_arg(EndTime::At(
                UNIX_EPOCH
                    .checked_add(Duration::from_secs(1 << 44))
                    .unwrap()
            ))
            .is_err()
        );
        assert!(end_arg(EndTime::In(Duration::MAX)).is_err());
        assert_eq!(
            end_arg(EndTime::In(Duration::from_secs(1))).unwrap().ms,
            "1000"
        );
    }
}
