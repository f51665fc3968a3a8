//! Benchmarks and bounds: each prints figures beside peers measured in the same run and asserts
//! only that the work was done (and the deterministic bounds), never a time. One test binary, one
//! module per subject.
//!
//! Run: `cargo test -p scar-e2e --test benches -- --nocapture` (`SCAR_BENCH_QUICK=1` for small
//! inputs; one module: `... --test benches pull_bench::`).

#[path = "../support/bootstrap.rs"]
mod bootstrap_support;

mod bench;
mod bootstrap_bench;
mod bounds;
mod concurrency_bench;
mod engine_bench;
mod http_bench;
mod preload_bench;
mod pull_bench;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Held by every benchmark while it measures: the figures of one are not taken while another
/// loads the machine, whatever `--test-threads` says. A benchmark that panicked leaves the lock
/// poisoned, which the next one ignores (its own figures are unaffected).
pub fn alone() -> MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}
