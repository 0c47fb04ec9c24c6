//! Crash points for the crash-safety tests: with `DAPSYNC_CRASH_AT=<name>` (or `<name>:<n>`, the
//! n-th time) the process aborts when it reaches the named point, as abruptly as `kill -9`. Without
//! the variable a crash point costs one comparison.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Target {
    name: String,
    nth: u64,
    hits: AtomicU64,
}

fn target() -> Option<&'static Target> {
    static TARGET: OnceLock<Option<Target>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let spec = std::env::var("DAPSYNC_CRASH_AT")
                .ok()
                .filter(|s| !s.is_empty())?;
            let (name, nth) = match spec.rsplit_once(':') {
                Some((name, n)) if n.parse::<u64>().is_ok() => {
                    (name.to_owned(), n.parse().unwrap_or(1))
                }
                _ => (spec, 1),
            };
            Some(Target {
                name,
                nth,
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Aborts the process if this is the configured crash point (and its configured occurrence).
pub fn hit(name: &str) {
    if let Some(target) = target()
        && target.name == name
        && target.hits.fetch_add(1, Ordering::SeqCst) + 1 == target.nth
    {
        eprintln!("dapsync: crashing at {name} (DAPSYNC_CRASH_AT)");
        std::process::abort();
    }
}
