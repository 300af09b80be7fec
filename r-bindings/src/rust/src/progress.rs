//! Progress of long reads and writes, shown on R's console.
//!
//! Worker threads only count (R may be touched from its main thread alone); the main thread,
//! which wakes every 100 ms while it waits, prints one line it keeps rewriting, once the call
//! has taken longer than the caller's delay (a second by default).

use batchstore_client::Progress;
use extendr_api::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Rows and bytes done so far, and what to call the work.
pub struct Counter {
    label: &'static str,
    delay: Duration,
    rows: AtomicU64,
    bytes: AtomicU64,
    started: Instant,
}

impl Counter {
    pub fn new(label: &'static str, delay: Duration) -> Self {
        Counter {
            label,
            delay,
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// Prints the line when the work has run longer than the delay; true if it printed.
    pub fn show(&self) -> bool {
        let elapsed = self.started.elapsed();
        if elapsed < self.delay {
            return false;
        }
        let megabytes = self.bytes.load(Ordering::Relaxed) as f64 / 1e6;
        reprint!(
            "\r{}: {} rows, {:.1} MB stored data, {:.0} s ",
            self.label,
            self.rows.load(Ordering::Relaxed),
            megabytes,
            elapsed.as_secs_f64()
        );
        true
    }

    /// Prints the final counts and ends the line when the work ran longer than the delay, also
    /// when it ended before the main thread woke to show it (a zero delay always shows them).
    pub fn finish(&self) {
        if self.show() {
            reprintln!();
        }
    }
}

impl Progress for Counter {
    fn advance(&self, rows: u64, bytes: u64) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}
