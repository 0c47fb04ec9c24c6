//! `/metrics`: the read model's counters and those wired in (the DAP client's), in the Prometheus text exposition
//! format 0.0.4, written by hand (a few families do not warrant a metrics crate).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::process::ProcessStats;
use super::{Entry, RunSummary, SkipReason, Status, TableId};
use crate::histogram::Histogram;

/// Metric families from outside the read model (the DAP client's counters), written after its own
/// on every scrape. `app` wires them.
#[derive(Clone)]
pub struct MetricsSource(Arc<dyn Fn(&mut Exposition) + Send + Sync>);

impl MetricsSource {
    pub fn new(write: impl Fn(&mut Exposition) + Send + Sync + 'static) -> Self {
        Self(Arc::new(write))
    }
}

impl std::fmt::Debug for MetricsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsSource")
    }
}

/// The `Content-Type` of [`Status::render_metrics`].
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of the run duration buckets, in seconds: from a quiet incremental to a large
/// snapshot.
const DURATION_BUCKETS: [f64; 11] = [
    0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0,
];

/// Upper bounds of the queue time buckets, in seconds: from a free slot to a long wait behind
/// the concurrency limit or the query budget.
const QUEUE_BUCKETS: [f64; 11] = [
    0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
];

/// What happened to one table since the process started.
#[derive(Debug)]
pub(super) struct TableCounters {
    succeeded: u64,
    failed: u64,
    pub(super) retries: u64,
    skipped: BTreeMap<SkipReason, u64>,
    /// Snapshots by reason (`initial`, `snapshot_required`, ...).
    snapshots: BTreeMap<&'static str, u64>,
    upserted: u64,
    deleted: u64,
    rejected: u64,
    durations: Histogram,
    queued: Histogram,
}

impl Default for TableCounters {
    fn default() -> Self {
        Self {
            succeeded: 0,
            failed: 0,
            retries: 0,
            skipped: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            upserted: 0,
            deleted: 0,
            rejected: 0,
            durations: Histogram::new(&DURATION_BUCKETS),
            queued: Histogram::new(&QUEUE_BUCKETS),
        }
    }
}

impl TableCounters {
    pub(super) fn success(&mut self, reports: &[RunSummary], duration: Duration) {
        self.succeeded += 1;
        self.durations.observe(duration.as_secs_f64());
        for report in reports {
            let count = |n: i64| u64::try_from(n).unwrap_or(0);
            self.upserted += count(report.upserted);
            self.deleted += count(report.deleted);
            self.rejected += count(report.rejected);
            if let Some(reason) = report.snapshot_reason {
                *self.snapshots.entry(reason).or_default() += 1;
            }
        }
    }

    pub(super) fn failure(&mut self, duration: Duration) {
        self.failed += 1;
        self.durations.observe(duration.as_secs_f64());
    }

    pub(super) fn skip(&mut self, reason: SkipReason) {
        *self.skipped.entry(reason).or_default() += 1;
    }

    pub(super) fn queue(&mut self, queued: Duration) {
        self.queued.observe(queued.as_secs_f64());
    }
}

/// The type of a metric family.
#[derive(Debug, Clone, Copy)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// Exposition text being written. Families must be written whole, one after another.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: MetricKind, help: &str) {
        let kind = match kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        };
        let help = help.replace('\\', r"\\").replace('\n', r"\n");
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let value = value
                    .replace('\\', r"\\")
                    .replace('"', r#"\""#)
                    .replace('\n', r"\n");
                let _ = write!(self.text, "{label}=\"{value}\"");
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }

    /// The samples of one histogram (`_bucket`, `_sum`, `_count`) of the current family.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &Histogram) {
        let mut cumulative = 0;
        let bucket = format!("{name}_bucket");
        for (bound, count) in histogram.bounds.iter().zip(&histogram.buckets) {
            cumulative += count;
            let le = number(*bound);
            let labels: Vec<_> = labels
                .iter()
                .copied()
                .chain([("le", le.as_str())])
                .collect();
            self.sample(&bucket, &labels, cumulative as f64);
        }
        let labels_inf: Vec<_> = labels.iter().copied().chain([("le", "+Inf")]).collect();
        self.sample(&bucket, &labels_inf, histogram.count as f64);
        self.sample(&format!("{name}_sum"), labels, histogram.sum);
        self.sample(&format!("{name}_count"), labels, histogram.count as f64);
    }
}

/// A sample value: integers without a fraction, the special values as Prometheus spells them.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// A per-table gauge: its name, help, and value (none: no sample for that table).
type TableGauge = (
    &'static str,
    &'static str,
    fn(&Entry, DateTime<Utc>) -> Option<f64>,
);

const TABLE_GAUGES: [TableGauge; 8] = [
    (
        "dapsync_table_lag_seconds",
        "Now minus the instant the table copy is current to.",
        |e, now| e.lag(now),
    ),
    (
        "dapsync_table_last_success_timestamp_seconds",
        "When the table last synced successfully (Unix time).",
        |e, _| e.last_success_at.map(seconds),
    ),
    (
        "dapsync_table_rows",
        "Rows in the table copy after its last run.",
        |e, _| e.rows.map(|r| r as f64),
    ),
    (
        "dapsync_table_schema_version",
        "Schema version of the table copy.",
        |e, _| e.schema_version.map(|v| v as f64),
    ),
    (
        "dapsync_table_running",
        "1 while the table syncs.",
        |e, _| {
            Some(f64::from(u8::from(matches!(
                e.phase,
                super::Phase::Running { .. }
            ))))
        },
    ),
    (
        "dapsync_table_failing",
        "1 when the table's last run failed.",
        |e, _| Some(f64::from(u8::from(e.consecutive_failures > 0))),
    ),
    (
        "dapsync_table_consecutive_failures",
        "Failed runs of the table since its last success.",
        |e, _| Some(e.consecutive_failures as f64),
    ),
    (
        "dapsync_table_schedule_period_seconds",
        "Time between the table's next two scheduled runs.",
        |e, now| e.schedule_period(now).map(|p| p.as_secs_f64()),
    ),
];

/// A per-table counter without extra labels.
type TableCounter = (&'static str, &'static str, fn(&TableCounters) -> u64);

const TABLE_COUNTERS: [TableCounter; 4] = [
    (
        "dapsync_table_retries_total",
        "Attempts of table runs retried after a transient error.",
        |c| c.retries,
    ),
    (
        "dapsync_rows_upserted_total",
        "Rows inserted or updated (snapshot rows included).",
        |c| c.upserted,
    ),
    (
        "dapsync_rows_deleted_total",
        "Rows deleted by incremental runs.",
        |c| c.deleted,
    ),
    (
        "dapsync_rows_rejected_total",
        "Records sent to the reject table.",
        |c| c.rejected,
    ),
];

/// A per-table counter split by one more label: its name, help, label, and values.
type SplitCounter = (
    &'static str,
    &'static str,
    &'static str,
    fn(&TableCounters) -> Vec<(&'static str, u64)>,
);

const SPLIT_COUNTERS: [SplitCounter; 3] = [
    (
        "dapsync_table_runs_total",
        "Table runs by outcome.",
        "outcome",
        |c| vec![("success", c.succeeded), ("failed", c.failed)],
    ),
    (
        "dapsync_table_skipped_total",
        "Ticks that did not run a table: still running, locked by another process, or paused.",
        "reason",
        |c| {
            SkipReason::ALL
                .iter()
                .map(|r| (r.as_str(), c.skipped.get(r).copied().unwrap_or(0)))
                .collect()
        },
    ),
    (
        "dapsync_table_snapshots_total",
        "Snapshots taken, by reason.",
        "reason",
        |c| c.snapshots.iter().map(|(r, n)| (*r, *n)).collect(),
    ),
];

impl Status {
    /// Every metric as Prometheus text (see [`METRICS_CONTENT_TYPE`]).
    pub fn render_metrics(&self) -> String {
        let now = Utc::now();
        let mut out = Exposition::default();
        {
            let state = self.state();
            let tables: Vec<(&TableId, &Entry)> = state.tables.iter().collect();
            for (name, help, value) in TABLE_GAUGES {
                out.family(name, MetricKind::Gauge, help);
                for (id, entry) in &tables {
                    if let Some(v) = value(entry, now) {
                        out.sample(name, &labels(id), v);
                    }
                }
            }
            for (name, help, value) in TABLE_COUNTERS {
                out.family(name, MetricKind::Counter, help);
                for (id, entry) in &tables {
                    out.sample(name, &labels(id), value(&entry.counters) as f64);
                }
            }
            for (name, help, label, values) in SPLIT_COUNTERS {
                out.family(name, MetricKind::Counter, help);
                for (id, entry) in &tables {
                    let [ns, table] = labels(id);
                    for (value, n) in values(&entry.counters) {
                        out.sample(name, &[ns, table, (label, value)], n as f64);
                    }
                }
            }
            let name = "dapsync_table_run_duration_seconds";
            out.family(
                name,
                MetricKind::Histogram,
                "Duration of table runs, retries included, time queued for a slot or a query left out.",
            );
            for (id, entry) in &tables {
                out.histogram(name, &labels(id), &entry.counters.durations);
            }
            let name = "dapsync_table_queue_seconds";
            out.family(
                name,
                MetricKind::Histogram,
                "Time table runs waited for a slot (max_concurrent_tables) or for the query budget.",
            );
            for (id, entry) in &tables {
                out.histogram(name, &labels(id), &entry.counters.queued);
            }
            let name = "dapsync_build_info";
            out.family(
                name,
                MetricKind::Gauge,
                "Always 1; the labels say which dapsync runs.",
            );
            out.sample(name, &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
            let process: [(&str, MetricKind, &str, f64); 4] = [
                (
                    "dapsync_start_time_seconds",
                    MetricKind::Gauge,
                    "When the process started (Unix time).",
                    seconds(self.inner.started_at),
                ),
                (
                    "dapsync_tables",
                    MetricKind::Gauge,
                    "Tables scheduled.",
                    tables.len() as f64,
                ),
                (
                    "dapsync_account_paused",
                    MetricKind::Gauge,
                    "1 while every table waits after an account-level error.",
                    f64::from(u8::from(state.paused_until.is_some_and(|t| t > now))),
                ),
                (
                    "dapsync_ready",
                    MetricKind::Gauge,
                    "1 when the database answered and the login worked at the last check.",
                    f64::from(u8::from(state.database.ok && state.login.ok)),
                ),
            ];
            for (name, kind, help, value) in process {
                out.family(name, kind, help);
                out.sample(name, &[], value);
            }
        }
        if let Some(source) = &self.inner.metrics_source {
            (source.0)(&mut out);
        }
        process_metrics(&mut out, &ProcessStats::read());
        out.text
    }
}

/// The `process_*` families of Prometheus' client libraries.
fn process_metrics(out: &mut Exposition, stats: &ProcessStats) {
    let families: [(&str, MetricKind, &str, Option<f64>); 6] = [
        (
            "process_cpu_seconds_total",
            MetricKind::Counter,
            "Total user and system CPU time spent in seconds.",
            stats.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            MetricKind::Gauge,
            "Resident memory size in bytes.",
            stats.resident_memory_bytes,
        ),
        (
            "process_virtual_memory_bytes",
            MetricKind::Gauge,
            "Virtual memory size in bytes.",
            stats.virtual_memory_bytes,
        ),
        (
            "process_start_time_seconds",
            MetricKind::Gauge,
            "Start time of the process since unix epoch in seconds.",
            stats.start_time_seconds,
        ),
        (
            "process_open_fds",
            MetricKind::Gauge,
            "Number of open file descriptors.",
            stats.open_fds,
        ),
        (
            "process_max_fds",
            MetricKind::Gauge,
            "Maximum number of open file descriptors.",
            stats.max_fds,
        ),
    ];
    for (name, kind, help, value) in families {
        if let Some(value) = value {
            out.family(name, kind, help);
            out.sample(name, &[], value);
        }
    }
}

/// The labels that name a table.
fn labels(id: &TableId) -> [(&'static str, &str); 2] {
    [("namespace", &id.namespace), ("table", &id.table)]
}
