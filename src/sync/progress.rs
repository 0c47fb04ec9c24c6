//! Progress of long runs: a live line on a terminal, periodic `rows/s` log lines otherwise.

use std::io::Write as _;
use std::time::{Duration, Instant};

/// How a run shows its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A line on stderr rewritten in place (for a person at a terminal).
    Bar,
    /// A log line every [`LOG_EVERY`].
    #[default]
    Log,
    /// Nothing.
    Quiet,
}

impl ProgressMode {
    /// `Bar` when stderr is a terminal, `Log` otherwise.
    pub fn detect() -> Self {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ProgressMode::Bar
        } else {
            ProgressMode::Log
        }
    }
}

const LOG_EVERY: Duration = Duration::from_secs(15);
const DRAW_EVERY: Duration = Duration::from_millis(250);

/// The progress of one run.
#[derive(Debug)]
pub(super) struct Progress {
    label: String,
    mode: ProgressMode,
    started: Instant,
    last_shown: Instant,
    records: u64,
    bytes: u64,
    drawn: bool,
}

impl Progress {
    pub(super) fn new(label: &str, mode: ProgressMode) -> Self {
        let now = Instant::now();
        Self {
            label: label.to_owned(),
            mode,
            started: now,
            last_shown: now,
            records: 0,
            bytes: 0,
            drawn: false,
        }
    }

    pub(super) fn advance(&mut self, records: u64, bytes: u64) {
        self.records += records;
        self.bytes += bytes;
        let every = match self.mode {
            ProgressMode::Bar => DRAW_EVERY,
            ProgressMode::Log => LOG_EVERY,
            ProgressMode::Quiet => return,
        };
        if self.last_shown.elapsed() < every {
            return;
        }
        self.last_shown = Instant::now();
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.records as f64 / seconds;
        let megabytes = self.bytes as f64 / 1e6;
        match self.mode {
            ProgressMode::Bar => {
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r\x1b[2K{}: {} records, {:.0} records/s, {:.1} MB",
                    self.label, self.records, rate, megabytes
                );
                let _ = err.flush();
                self.drawn = true;
            }
            ProgressMode::Log => {
                tracing::info!(table = %self.label, records = self.records, records_per_sec = rate as u64, mb = megabytes as u64, "loading");
            }
            ProgressMode::Quiet => {}
        }
    }

    /// Clears the live line, if one was drawn.
    pub(super) fn finish(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
