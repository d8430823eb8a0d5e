//! The four sides every section compares: the ceiling, the minimal script
//! pair, the library and the reference protocol.

/// The four sides, in the order each round measures them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// ½ × raw `EVALSHA return 1`.
    Ceiling = 0,
    /// The minimal begin/finish script pair (`minimal.rs`).
    Minimal = 1,
    /// The library.
    Ours = 2,
    /// The reference lock protocol (`reference.rs`).
    Reference = 3,
}

impl Side {
    pub const ALL: [Side; 4] = [Side::Ceiling, Side::Minimal, Side::Ours, Side::Reference];

    /// The name `lua_cost.py` uses.
    pub fn key(self) -> &'static str {
        match self {
            Side::Ceiling => "ceiling",
            Side::Minimal => "minimal",
            Side::Ours => "ours",
            Side::Reference => "reference",
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Ceiling => "ceiling",
            Side::Minimal => "minimal pair",
            Side::Ours => "ours",
            Side::Reference => "reference",
        })
    }
}
