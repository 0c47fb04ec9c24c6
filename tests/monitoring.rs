//! The metrics a running daemon exports against what the monitoring kit (deploy/monitoring)
//! uses, and the figures behind the kit's panels: latency, job waits, queue time, 429s.

use std::collections::BTreeSet;
use std::time::Duration;

use dapsync::fake::{Endpoint, RateLimits};
use dapsync::sql::Dialect;

use crate::support::daemon::{self, get, start, stop, wait_for};
use crate::support::{self, TestDb, prometheus};

/// Every metric family named in the alert rules, their unit tests and the dashboard.
fn kit_metric_names() -> BTreeSet<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/monitoring");
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "yaml" | "yml" | "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (start, _) in text.match_indices(['d', 'p']) {
            let rest = &text[start..];
            if !(rest.starts_with("dapsync_") || rest.starts_with("process_")) {
                continue;
            }
            let before = text[..start].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

/// The family a sample name belongs to (`x_bucket` of the histogram `x`, ...).
fn family<'a>(name: &'a str, families: &BTreeSet<String>) -> Option<&'a str> {
    if families.contains(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| name.strip_suffix(suffix))
        .find(|base| families.contains(*base))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_monitoring_kit_uses_is_exported() {
    let tables = ["canvas.courses", "canvas.users"];
    let fake = support::fake(&[("canvas", "courses", 10), ("canvas", "users", 10)]).await;
    // Query starts above 3 a minute get a 429, as the API's own limit would answer: the
    // client retries them after Retry-After, so the runs still end.
    fake.set_rate_limits(Some(RateLimits {
        window: Duration::from_secs(2),
        ..RateLimits::api().with_queries(3)
    }));
    let db = TestDb::new(Dialect::Sqlite).await;
    let config = daemon::config(&fake, &db, &tables);
    let (daemon, _) = start(&config).await;
    let addr = daemon.http_addr().unwrap();
    let rate_limited = || {
        fake.requests()
            .iter()
            .filter(|r| r.endpoint == Endpoint::Query && r.status == 429)
            .count()
    };
    wait_for(
        daemon.status(),
        "two runs of each table and a 429",
        |view| {
            view.tables.iter().all(|t| {
                t.last_run.is_some() && t.synced_until.is_some() && t.last_success_at.is_some()
            }) && rate_limited() > 0
        },
    )
    .await;

    let (code, _, text) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    let samples = prometheus::parse(&text);
    let families: BTreeSet<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|rest| rest.split_once(' ').unwrap().0.to_owned())
        .collect();
    let kit = kit_metric_names();
    assert!(kit.len() >= 20, "{kit:?}");
    for name in &kit {
        let family = family(name, &families);
        assert!(
            family.is_some(),
            "{name} is used by deploy/monitoring but not exported"
        );
        assert!(
            samples.iter().any(|s| s.name == *name),
            "{name} has no sample"
        );
    }
    // Every family follows the naming scheme.
    for name in &families {
        assert!(
            name.starts_with("dapsync_") || name.starts_with("process_"),
            "{name}"
        );
    }
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').unwrap();
        assert_eq!(name.ends_with("_total"), kind == "counter", "{line}");
    }

    assert_eq!(
        prometheus::value(
            &samples,
            "dapsync_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    let courses = [("namespace", "canvas"), ("table", "courses")];
    assert_eq!(
        prometheus::value(&samples, "dapsync_table_schedule_period_seconds", &courses),
        1.0
    );
    let runs = prometheus::value(
        &samples,
        "dapsync_table_run_duration_seconds_count",
        &courses,
    );
    let queued = prometheus::value(&samples, "dapsync_table_queue_seconds_count", &courses);
    assert!(runs >= 1.0);
    assert_eq!(queued, runs, "one queue time per run");
    let limited = prometheus::value(
        &samples,
        "dapsync_dap_rate_limited_total",
        &[("endpoint", "start_query")],
    );
    assert!(limited >= 1.0, "{limited}");
    let answered_429 = prometheus::value(
        &samples,
        "dapsync_dap_requests_total",
        &[("endpoint", "start_query"), ("status", "429")],
    );
    assert_eq!(limited, answered_429);
    let latencies = prometheus::value(
        &samples,
        "dapsync_dap_request_duration_seconds_count",
        &[("endpoint", "start_query"), ("status", "202")],
    );
    let started = prometheus::value(
        &samples,
        "dapsync_dap_requests_total",
        &[("endpoint", "start_query"), ("status", "202")],
    );
    assert_eq!(latencies, started);
    assert!(prometheus::value(&samples, "dapsync_dap_job_wait_seconds_count", &[]) >= 2.0);
    assert!(prometheus::value(&samples, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(prometheus::value(&samples, "process_open_fds", &[]) >= 3.0);
    assert!(prometheus::value(&samples, "process_start_time_seconds", &[]) > 1.6e9);
    stop(daemon).await;
}
