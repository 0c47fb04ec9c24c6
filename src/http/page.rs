//! The status page at `/`: one server-rendered HTML page with every table (state, lag, rows,
//! schedule, next run, last error) and the latest runs, for a person with a browser. It reloads
//! itself every [`REFRESH_SECONDS`] with a meta refresh: no script at all. Every text that comes
//! from outside (table names, error messages) is escaped.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};

use super::Api;
use crate::scheduler::{RunFilter, RunRecord};
use crate::status::{StatusView, TableState, TableView};

/// How often the page reloads itself.
const REFRESH_SECONDS: u32 = 10;
/// How many of the latest runs the page lists.
const LATEST_RUNS: i64 = 25;
/// Nothing but the page's own inline styles may load: no scripts, frames, fonts or images.
const POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                      base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.15em;margin:1.5em 0 .4em}\
p.meta{color:#555;margin:.2em 0}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3em .6em;\
border-bottom:1px solid #ddd;vertical-align:top}th{background:#f4f4f4}\
td.num{text-align:right;font-variant-numeric:tabular-nums}\
.state{font-weight:600;padding:.1em .4em;border-radius:.3em}\
.idle,.success{background:#e3f4e3}.running,.queued{background:#e3ecfa}\
.failing,.failed{background:#fbe1e1}.paused,.skipped,.cancelled,.interrupted{background:#f6efd9}\
.error{color:#a00;word-break:break-word}code{font-size:.95em}";

/// `GET /`.
pub(super) async fn page(State(api): State<Api>) -> Response {
    let view = api.status.view();
    // The run history lives in the database, read through the scheduler's handle; without one
    // (an endpoint serving only the read model) the page shows the tables alone.
    let runs = match &api.control {
        Some(control) => Some(
            control
                .runs(&RunFilter {
                    limit: LATEST_RUNS,
                    ..RunFilter::default()
                })
                .await
                .map_err(|error| error.to_string()),
        ),
        None => None,
    };
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::CACHE_CONTROL, "no-store"),
        ],
        render(&view, runs.as_ref()),
    )
        .into_response()
}

/// The page for `view` and the latest runs (or why they could not be read).
fn render(view: &StatusView, runs: Option<&Result<Vec<RunRecord>, String>>) -> String {
    let mut html = String::with_capacity(16 * 1024);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"icon\" href=\"data:,\">\
         <title>dapsync status</title><style>{STYLE}</style></head><body>\n\
         <h1>dapsync</h1>\n<p class=\"meta\">{} tables &middot; {} &middot; started {} \
         &middot; as of <time id=\"now\">{}</time> (reloads every {REFRESH_SECONDS} s) &middot; \
         <a href=\"/status\">JSON</a> &middot; <a href=\"/metrics\">metrics</a></p>\n",
        view.tables.len(),
        if view.ready { "ready" } else { "not ready" },
        time(Some(view.started_at)),
        time(Some(view.now)),
    );
    if let Some(until) = view.paused_until {
        let _ = writeln!(
            html,
            "<p class=\"error\">Every table is paused after an account-level error until {}.</p>",
            time(Some(until))
        );
    }
    tables(&mut html, &view.tables);
    match runs {
        Some(Ok(runs)) => latest_runs(&mut html, runs),
        Some(Err(error)) => {
            let _ = writeln!(
                html,
                "<h2>Latest runs</h2>\n<p class=\"error\">The run history cannot be read: {}</p>",
                escape(error)
            );
        }
        None => {}
    }
    html.push_str("</body></html>\n");
    html
}

fn tables(html: &mut String, tables: &[TableView]) {
    html.push_str(
        "<h2>Tables</h2>\n<table id=\"tables\"><thead><tr><th>table</th><th>state</th>\
         <th>lag</th><th>rows</th><th>schedule</th><th>next run</th><th>last success</th>\
         <th>last error</th></tr></thead><tbody>\n",
    );
    if tables.is_empty() {
        html.push_str("<tr><td colspan=\"8\">No table is scheduled.</td></tr>\n");
    }
    for t in tables {
        let state = state_name(t.state);
        let state_note = match t.state {
            TableState::Failing => format!(" ({} in a row)", t.consecutive_failures),
            TableState::Running | TableState::Queued => t
                .running_since
                .map(|since| format!(" since {}", time(Some(since))))
                .unwrap_or_default(),
            _ => String::new(),
        };
        let error = match &t.last_error {
            Some(e) => format!(
                "<span class=\"error\"><code>{}</code> {}</span><br><small>{}{}</small>",
                escape(&e.error_type),
                escape(&e.message),
                time(Some(e.at)),
                e.uuid
                    .as_deref()
                    .map(|uuid| format!(" &middot; uuid {}", escape(uuid)))
                    .unwrap_or_default(),
            ),
            None => String::new(),
        };
        let _ = writeln!(
            html,
            "<tr data-table=\"{name}\"><td>{name}</td><td><span class=\"state {state}\">{state}</span>{state_note}</td>\
             <td class=\"num\">{lag}</td><td class=\"num\">{rows}</td><td><code>{schedule}</code></td>\
             <td>{next}</td><td>{success}</td><td>{error}</td></tr>",
            name = escape(&format!("{}.{}", t.namespace, t.table)),
            lag = t.lag_seconds.map(duration).unwrap_or_default(),
            rows = t.rows.map(count).unwrap_or_default(),
            schedule = escape(&t.schedule),
            next = time(t.next_run),
            success = time(t.last_success_at),
        );
    }
    html.push_str("</tbody></table>\n");
}

fn latest_runs(html: &mut String, runs: &[RunRecord]) {
    html.push_str(
        "<h2>Latest runs</h2>\n<table id=\"runs\"><thead><tr><th>#</th><th>table</th>\
         <th>kind</th><th>started</th><th>outcome</th><th>upserted</th><th>deleted</th>\
         <th>rejected</th><th>queued / API / load</th><th>error</th></tr></thead><tbody>\n",
    );
    if runs.is_empty() {
        html.push_str("<tr><td colspan=\"10\">No run yet.</td></tr>\n");
    }
    for run in runs {
        let outcome = run.outcome.as_str();
        let kind = match &run.reason {
            Some(reason) => format!("{} ({})", escape(&run.kind), escape(reason)),
            None => escape(&run.kind),
        };
        let split = match (run.queued_seconds, run.api_seconds, run.load_seconds) {
            (Some(q), Some(a), Some(l)) => {
                format!("{} / {} / {}", duration(q), duration(a), duration(l))
            }
            _ => String::new(),
        };
        let error = match (&run.error_type, &run.error_message) {
            (Some(kind), message) => format!(
                "<span class=\"error\"><code>{}</code> {}</span>",
                escape(kind),
                escape(message.as_deref().unwrap_or_default())
            ),
            (None, _) => String::new(),
        };
        let _ = writeln!(
            html,
            "<tr><td class=\"num\">{id}</td><td>{name}</td><td>{kind}</td><td>{started}</td>\
             <td><span class=\"state {outcome}\">{outcome}</span></td><td class=\"num\">{up}</td>\
             <td class=\"num\">{del}</td><td class=\"num\">{rej}</td><td>{split}</td><td>{error}</td></tr>",
            id = run.id,
            name = escape(&format!("{}.{}", run.namespace, run.table)),
            started = time(run.started_at),
            up = count(run.rows_upserted),
            del = count(run.rows_deleted),
            rej = count(run.rows_rejected),
        );
    }
    html.push_str("</tbody></table>\n");
}

fn state_name(state: TableState) -> &'static str {
    match state {
        TableState::Idle => "idle",
        TableState::Queued => "queued",
        TableState::Running => "running",
        TableState::Failing => "failing",
        TableState::Paused => "paused",
        TableState::Skipped => "skipped",
    }
}

/// `text` safe in HTML text and in quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A UTC instant to the second; empty for none.
fn time(at: Option<DateTime<Utc>>) -> String {
    at.map(|t| {
        t.to_rfc3339_opts(SecondsFormat::Secs, true)
            .replace('T', " ")
    })
    .unwrap_or_default()
}

/// Seconds as a person reads them: `850 ms`, `42 s`, `3 min 12 s`, `5 h 07 min`, `2 d 3 h`.
fn duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return String::new();
    }
    let sign = if seconds < 0.0 { "-" } else { "" };
    let s = seconds.abs();
    if s < 1.0 {
        return format!("{sign}{} ms", (s * 1000.0).round());
    }
    let whole = s.round() as u64;
    let text = match whole {
        0..60 => format!("{whole} s"),
        60..3600 => format!("{} min {:02} s", whole / 60, whole % 60),
        3600..86400 => format!("{} h {:02} min", whole / 3600, whole % 3600 / 60),
        _ => format!("{} d {} h", whole / 86400, whole % 86400 / 3600),
    };
    format!("{sign}{text}")
}

/// A count with thin separators between thousands: `1 234 567`.
fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push_str("&#8239;");
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;

    #[test]
    fn outside_text_is_escaped() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        let run = RunRecord {
            id: 7,
            namespace: "canvas".into(),
            table: "<b>courses</b>".into(),
            kind: "incremental".into(),
            reason: None,
            job_id: None,
            since: None,
            until: None,
            schema_version: None,
            rows_upserted: 1234,
            rows_deleted: 0,
            rows_rejected: 0,
            bytes: 0,
            started_at: None,
            finished_at: None,
            outcome: crate::scheduler::RunOutcome::Failed,
            error_type: Some("DatabaseError".into()),
            error_message: Some("column \"<img src=x onerror=alert(1)>\" is bad".into()),
            error_uuid: None,
            warnings: Vec::new(),
            queued_seconds: Some(0.0),
            api_seconds: Some(4.2),
            load_seconds: Some(75.0),
        };
        let html = render(&Status::default().view(), Some(&Ok(vec![run])));
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(
            html.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{html}"
        );
        assert!(html.contains("canvas.&lt;b&gt;courses&lt;/b&gt;"), "{html}");
        assert!(html.contains("0 ms / 4 s / 1 min 15 s"), "{html}");
        assert!(html.contains("1&#8239;234"), "{html}");
        assert!(html.contains("No table is scheduled."), "{html}");
    }

    #[test]
    fn durations_and_counts_read_well() {
        assert_eq!(duration(0.25), "250 ms");
        assert_eq!(duration(42.4), "42 s");
        assert_eq!(duration(192.0), "3 min 12 s");
        assert_eq!(duration(5.0 * 3600.0 + 420.0), "5 h 07 min");
        assert_eq!(duration(2.0 * 86400.0 + 3.0 * 3600.0), "2 d 3 h");
        assert_eq!(duration(-3.0), "-3 s");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1&#8239;000");
        assert_eq!(count(-1_234_567), "-1&#8239;234&#8239;567");
    }
}
