//! The DAP client's counters as `/metrics` families (`dapsync_dap_*`), wired into the read model.

use crate::dap::DapClient;
use crate::status::{Exposition, MetricKind, MetricsSource};

/// The families of `client`'s counters, read at every scrape.
pub fn dap_metrics(client: DapClient) -> MetricsSource {
    MetricsSource::new(move |out| write_dap_metrics(out, &client))
}

fn write_dap_metrics(out: &mut Exposition, client: &DapClient) {
    let client = client.metrics();
    let name = "dapsync_dap_requests_total";
    out.family(
        name,
        MetricKind::Counter,
        "DAP API requests by endpoint and HTTP status (`error`: no answer).",
    );
    for ((endpoint, status), n) in &client.requests {
        let labels = [("endpoint", *endpoint), ("status", status.as_str())];
        out.sample(name, &labels, *n as f64);
    }
    let name = "dapsync_dap_retries_total";
    out.family(
        name,
        MetricKind::Counter,
        "DAP API requests sent again after a transient failure.",
    );
    for (endpoint, n) in &client.retries {
        out.sample(name, &[("endpoint", *endpoint)], *n as f64);
    }
    let name = "dapsync_dap_request_duration_seconds";
    out.family(
        name,
        MetricKind::Histogram,
        "DAP API request latency until the answer's head, by endpoint and HTTP status.",
    );
    for ((endpoint, status), histogram) in &client.request_durations {
        let labels = [("endpoint", *endpoint), ("status", status.as_str())];
        out.histogram(name, &labels, histogram);
    }
    let name = "dapsync_dap_rate_limited_total";
    out.family(
        name,
        MetricKind::Counter,
        "DAP API answers 429 Too Many Requests, by endpoint.",
    );
    for (endpoint, n) in &client.rate_limited {
        out.sample(name, &[("endpoint", *endpoint)], *n as f64);
    }
    let name = "dapsync_dap_job_wait_seconds";
    out.family(
        name,
        MetricKind::Histogram,
        "Time from a query's start to its job's end.",
    );
    out.histogram(name, &[], &client.job_waits);
    let totals: [(&str, &str, f64); 6] = [
        (
            "dapsync_dap_logins_total",
            "Successful logins.",
            client.logins as f64,
        ),
        (
            "dapsync_dap_rate_limit_waits_total",
            "Query starts that waited for the client-side rate limiter.",
            client.rate_limit_waits as f64,
        ),
        (
            "dapsync_dap_rate_limit_wait_seconds_total",
            "Time spent waiting for the client-side rate limiter.",
            client.rate_limit_wait_seconds,
        ),
        (
            "dapsync_dap_downloaded_bytes_total",
            "Compressed bytes downloaded.",
            client.bytes_downloaded as f64,
        ),
        (
            "dapsync_dap_records_decoded_total",
            "Records decoded from downloads.",
            client.records_decoded as f64,
        ),
        (
            "dapsync_dap_malformed_lines_total",
            "Downloaded lines that were not valid records.",
            client.malformed_lines as f64,
        ),
    ];
    for (name, help, value) in totals {
        out.family(name, MetricKind::Counter, help);
        out.sample(name, &[], value);
    }
}
