//! The one place that reads the wall clock. Pure code takes `now` as an argument; the I/O
//! shell asks a [`Clock`]. A clock may carry an offset, so tests can run a node whose clock is
//! ahead or behind and exercise the skew handling for real.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds, with an optional fixed offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    offset: i64,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock { offset: 0 }
    }

    /// The system clock shifted by `offset` seconds.
    pub fn offset(offset: i64) -> Clock {
        Clock { offset }
    }

    /// Now, in Unix seconds.
    pub fn now(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        real.saturating_add_signed(self.offset)
    }
}
