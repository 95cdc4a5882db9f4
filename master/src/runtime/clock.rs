//! The time handed to the core: milliseconds since the Unix epoch, but advancing with the
//! monotonic clock so that wall-clock jumps never fire or stall timers.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
    start_wall_ms: u64,
}

impl Clock {
    pub fn new() -> Self {
        let start_wall_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        Self { start: Instant::now(), start_wall_ms }
    }

    pub fn now_ms(&self) -> u64 {
        self.start_wall_ms.saturating_add(self.start.elapsed().as_millis() as u64)
    }

    pub fn start_wall_ms(&self) -> u64 {
        self.start_wall_ms
    }
}

/// The wall clock now, in milliseconds since the Unix epoch (0 before it).
pub fn wall_ms() -> u64 {
    Clock::new().start_wall_ms()
}
