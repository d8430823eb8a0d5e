//! Plain-text tables and the compact renderings of durations and times
//! that every human-readable output shares.

use std::time::{Duration, SystemTime};

/// A table with a header row; columns are as wide as their widest cell.
pub struct Table {
    headers: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers, all left-aligned.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            right: vec![false; headers.len()],
            rows: Vec::new(),
        }
    }

    /// Right-aligns the columns at these indexes (numbers).
    pub fn right_align(mut self, columns: &[usize]) -> Table {
        for &c in columns {
            if let Some(r) = self.right.get_mut(c) {
                *r = true;
            }
        }
        self
    }

    /// Adds a row; missing cells are blank.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, two spaces between columns.
    pub fn render(&self) -> String {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(n) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            let mut text = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                let pad = width.saturating_sub(cell.chars().count());
                if i > 0 {
                    text.push_str("  ");
                }
                if self.right[i] {
                    text.push_str(&" ".repeat(pad));
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    if i + 1 < n {
                        text.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&self.headers);
        for row in &self.rows {
            line(row);
        }
        out
    }
}

/// A duration in the fewest characters that still say enough:
/// `0.4ms`, `350ms`, `4.2s`, `42s`, `5m02s`, `23h59m`, `3d04h`.
pub fn span(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    if ms < 10 {
        format!("{:.1}ms", d.as_secs_f64() * 1e3)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 10_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
    }
}

/// A wall-clock time as RFC 3339 (UTC, seconds) with how far it is from
/// `now`: `2026-05-01T10:00:00Z (in 59m59s)` or `(... 3m02s ago)`.
pub fn moment(t: SystemTime, now: SystemTime) -> String {
    let when = humantime::format_rfc3339_seconds(t);
    match t.duration_since(now) {
        Ok(ahead) if ahead >= Duration::from_secs(1) => format!("{when} (in {})", span(ahead)),
        Ok(_) => format!("{when} (now)"),
        Err(behind) => format!("{when} ({} ago)", span(behind.duration())),
    }
}

/// Milliseconds of a duration, saturating, for JSON.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_compact() {
        assert_eq!(span(Duration::from_micros(420)), "0.4ms");
        assert_eq!(span(Duration::from_millis(350)), "350ms");
        assert_eq!(span(Duration::from_millis(4_240)), "4.2s");
        assert_eq!(span(Duration::from_secs(42)), "42s");
        assert_eq!(span(Duration::from_secs(302)), "5m02s");
        assert_eq!(span(Duration::from_secs(86_399)), "23h59m");
        assert_eq!(span(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3d04h");
    }

    #[test]
    fn columns_align() {
        let mut t = Table::new(&["ID", "N"]).right_align(&[1]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["long-id".into(), "100".into()]);
        assert_eq!(t.render(), "ID         N\na          1\nlong-id  100\n");
    }
}
