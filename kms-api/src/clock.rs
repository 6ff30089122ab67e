//! Time as kms-api sees it, behind a trait so tests can move it.

use std::sync::atomic::{AtomicI64, Ordering};

/// A source of "now", in seconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
    }
}

/// A clock that moves only when told to (tests of rotation and deletion).
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// Starts at the system time.
    pub fn new() -> Self {
        Self { now: AtomicI64::new(SystemClock.now()) }
    }

    /// Now, without the trait in scope.
    pub fn now_for_test(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    /// Moves time forward.
    pub fn advance(&self, seconds: i64) {
        self.now.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}
