//! The benchmark's error and result types (every part of the bench
//! returns them; main only reports them).

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, BoxError>;
