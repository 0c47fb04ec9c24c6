use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::table::TableStatus;

fn id(table: &str) -> TableId {
    TableId::new("canvas", table)
}

fn hourly(tables: &[&str]) -> Vec<(TableId, CronSchedule)> {
    tables
        .iter()
        .map(|t| (id(t), CronSchedule::hourly()))
        .collect()
}

/// The kind of a run in these tests.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Snapshot,
    Incremental,
}

/// What a run of `canvas.<table>` did (`_table` names the run for the reader).
fn report(_table: &str, kind: Kind, watermark: DateTime<Utc>, upserted: i64) -> RunSummary {
    RunSummary {
        snapshot_reason: (kind == Kind::Snapshot).then_some("initial"),
        watermark,
        schema_version: 3,
        upserted,
        deleted: 2,
        rejected: 1,
        row_count: 40,
        warnings: Vec::new(),
    }
}

fn failure() -> Failure {
    Failure {
        error_type: "StateError".into(),
        uuid: None,
        message: "canvas.courses: something is off".into(),
    }
}

#[test]
fn tables_start_from_what_the_database_knows() {
    let status = Status::default();
    let synced = Utc::now() - TimeDelta::seconds(600);
    let known = TableStatus {
        namespace: "canvas".into(),
        table: "courses".into(),
        synced_until: Some(synced),
        schema_version: Some(7),
        row_count: Some(1234),
        last_success_at: Some(synced),
        last_error_type: Some("ProcessingError".into()),
        last_error_uuid: Some("0f8e".into()),
        last_error_message: Some("the job failed".into()),
        last_error_at: Some(synced),
        consecutive_failures: 2,
        paused_at: None,
    };
    status.set_tables(&hourly(&["courses", "users"]), &[known]);
    let view = status.view();
    assert_eq!(view.tables.len(), 2);
    let courses = &view.tables[0];
    assert_eq!(courses.table, "courses");
    assert_eq!(courses.state, TableState::Failing);
    assert_eq!(courses.rows, Some(1234));
    assert_eq!(courses.schema_version, Some(7));
    assert_eq!(courses.consecutive_failures, 2);
    let lag = courses.lag_seconds.unwrap();
    assert!((600.0..700.0).contains(&lag), "{lag}");
    let error = courses.last_error.as_ref().unwrap();
    assert_eq!(
        (error.error_type.as_str(), error.uuid.as_deref()),
        ("ProcessingError", Some("0f8e"))
    );
    let next = courses.next_run.unwrap();
    assert_eq!(next.timestamp() % 3600, 0, "{next}");
    assert_eq!(next.timestamp_subsec_nanos(), 0, "{next}");
    assert!(next > view.now && next - view.now <= TimeDelta::hours(1));
    let users = &view.tables[1];
    assert_eq!(users.state, TableState::Idle);
    assert_eq!(
        (users.synced_until, users.rows, users.lag_seconds),
        (None, None, None)
    );
}

#[test]
fn runs_move_the_state_and_report_failing_and_recovery() {
    let status = Status::default();
    status.set_tables(&hourly(&["courses"]), &[]);
    let courses = id("courses");
    let state = || status.table(&courses).unwrap().state;

    status.queued(&courses);
    assert_eq!(state(), TableState::Queued);
    status.started(&courses);
    assert_eq!(state(), TableState::Running);
    assert!(status.table(&courses).unwrap().running_since.is_some());

    let first = status.failed(&courses, &failure(), Duration::from_secs(1));
    assert_eq!(first.unwrap().error_type, "StateError");
    assert_eq!(state(), TableState::Failing);
    status.started(&courses);
    assert_eq!(
        status.failed(&courses, &failure(), Duration::from_secs(1)),
        None,
        "a table already failing does not start failing again"
    );
    assert_eq!(status.table(&courses).unwrap().consecutive_failures, 2);

    let watermark = Utc::now() - TimeDelta::seconds(30);
    let reports = [report("courses", Kind::Incremental, watermark, 5)];
    let recovered = status.succeeded(&courses, &reports, Duration::from_secs(3));
    assert_eq!(recovered.unwrap().message, failure().message);
    let view = status.table(&courses).unwrap();
    assert_eq!(view.state, TableState::Idle);
    assert_eq!(view.synced_until, Some(watermark));
    assert_eq!((view.rows, view.schema_version), (Some(40), Some(3)));
    assert_eq!(view.consecutive_failures, 0);
    assert_eq!(view.last_run.unwrap().outcome, RunOutcome::Success);
    assert!(view.last_error.is_some(), "the last error stays on record");
    assert_eq!(
        status.succeeded(&courses, &reports, Duration::from_secs(3)),
        None
    );

    status.skipped(&courses, SkipReason::Locked);
    assert_eq!(state(), TableState::Skipped);
    status.started(&courses);
    status.abandoned(&courses);
    assert_eq!(state(), TableState::Idle);

    status.set_paused(Some(Utc::now() + TimeDelta::seconds(60)));
    assert_eq!(state(), TableState::Paused);
    assert!(status.view().paused_until.is_some());
    status.set_paused(Some(Utc::now() - TimeDelta::seconds(1)));
    assert_eq!(state(), TableState::Idle);
    assert_eq!(status.view().paused_until, None);
}

#[tokio::test]
async fn subscribers_see_every_event_in_order() {
    let status = Status::default();
    status.set_tables(&hourly(&["courses"]), &[]);
    let courses = id("courses");
    let mut events = status.subscribe();
    let watermark = Utc::now();
    status.started(&courses);
    status.retrying(&courses, 1, &failure());
    status.started(&courses);
    status.succeeded(
        &courses,
        &[report("courses", Kind::Snapshot, watermark, 40)],
        Duration::from_secs(1),
    );
    status.skipped(&courses, SkipReason::Running);
    let mut kinds = Vec::new();
    for _ in 0..5 {
        let event = events.recv().await.unwrap();
        assert_eq!(event.table, courses);
        kinds.push(event.kind);
    }
    assert_eq!(
        kinds,
        [
            RunEventKind::Started,
            RunEventKind::Retrying {
                attempt: 1,
                error_type: "StateError".into()
            },
            RunEventKind::Started,
            RunEventKind::Succeeded {
                watermark: Some(watermark)
            },
            RunEventKind::Skipped(SkipReason::Running),
        ]
    );
}

#[test]
fn tables_no_longer_scheduled_disappear_and_others_keep_their_state() {
    let status = Status::default();
    status.set_tables(&hourly(&["courses", "users"]), &[]);
    status.failed(&id("users"), &failure(), Duration::from_secs(1));
    let every_minute = CronSchedule::parse("* * * * *").unwrap();
    status.set_tables(&[(id("users"), every_minute.clone())], &[]);
    let view = status.view();
    assert_eq!(view.tables.len(), 1);
    assert_eq!(view.tables[0].state, TableState::Failing);
    assert_eq!(view.tables[0].schedule, every_minute.as_str());
    // Updates about an unscheduled table are ignored.
    status.started(&id("courses"));
    assert_eq!(status.table(&id("courses")), None);
}

#[test]
fn readiness_needs_both_checks() {
    let status = Status::default();
    let readiness = status.readiness();
    assert!(!readiness.ready);
    assert_eq!(readiness.database.checked_at, None);
    status.set_database_check(Ok(()));
    status.set_login_check(Err("AuthenticationError".into()));
    let readiness = status.readiness();
    assert!(!readiness.ready && readiness.database.ok);
    assert_eq!(
        readiness.login.error.as_deref(),
        Some("AuthenticationError")
    );
    status.set_login_check(Ok(()));
    assert!(status.readiness().ready);
    assert!(status.view().ready);
}

#[tokio::test(start_paused = true)]
async fn a_silent_scheduler_is_not_alive() {
    let status = Status::default();
    assert!(status.is_alive());
    tokio::time::advance(HEARTBEAT_STALE + Duration::from_secs(1)).await;
    assert!(!status.is_alive());
    status.heartbeat();
    assert!(status.is_alive());
}

/// The sample lines of one metric family, as `labels value` text.
fn samples(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix(name))
        .filter(|rest| rest.starts_with(['{', ' ']))
        .map(|rest| rest.trim().to_owned())
        .collect()
}

#[test]
fn metrics_count_runs_rows_skips_and_durations() {
    let status = Status::default();
    status.set_tables(&hourly(&["courses", "we\"ird\\name"]), &[]);
    let courses = id("courses");
    let watermark = Utc::now() - TimeDelta::seconds(90);
    status.started(&courses);
    status.succeeded(
        &courses,
        &[
            report("courses", Kind::Incremental, watermark, 5),
            report("courses", Kind::Snapshot, watermark, 40),
        ],
        Duration::from_secs(3),
    );
    status.retrying(&courses, 1, &failure());
    status.failed(&courses, &failure(), Duration::from_millis(200));
    status.skipped(&courses, SkipReason::Running);
    let text = status.render_metrics();

    let labels = r#"namespace="canvas",table="courses""#;
    assert_eq!(
        samples(&text, "dapsync_table_runs_total"),
        [
            format!(r#"{{{labels},outcome="success"}} 1"#),
            format!(r#"{{{labels},outcome="failed"}} 1"#),
            r#"{namespace="canvas",table="we\"ird\\name",outcome="success"} 0"#.to_owned(),
            r#"{namespace="canvas",table="we\"ird\\name",outcome="failed"} 0"#.to_owned(),
        ]
    );
    assert!(text.contains(&format!("dapsync_rows_upserted_total{{{labels}}} 45\n")));
    assert!(text.contains(&format!("dapsync_rows_deleted_total{{{labels}}} 4\n")));
    assert!(text.contains(&format!("dapsync_table_retries_total{{{labels}}} 1\n")));
    assert!(text.contains(&format!(
        "dapsync_table_skipped_total{{{labels},reason=\"running\"}} 1\n"
    )));
    assert!(text.contains(&format!(
        "dapsync_table_snapshots_total{{{labels},reason=\"initial\"}} 1\n"
    )));
    assert!(text.contains(&format!("dapsync_table_failing{{{labels}}} 1\n")));
    let lag = samples(&text, "dapsync_table_lag_seconds");
    assert_eq!(lag.len(), 1, "only synced tables have a lag: {lag:?}");
    let buckets: Vec<String> = samples(&text, "dapsync_table_run_duration_seconds_bucket")
        .into_iter()
        .filter(|s| s.contains(r#"table="courses""#))
        .collect();
    assert_eq!(
        buckets.first().unwrap(),
        &format!(r#"{{{labels},le="0.5"}} 1"#)
    );
    assert_eq!(buckets[2], format!(r#"{{{labels},le="5"}} 2"#));
    assert_eq!(
        buckets.last().unwrap(),
        &format!(r#"{{{labels},le="+Inf"}} 2"#)
    );
    assert_eq!(
        samples(&text, "dapsync_table_run_duration_seconds_sum")[0],
        format!("{{{labels}}} 3.2")
    );
    // Every family is announced once, right before its samples.
    let mut seen = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(!seen.contains(&name), "{name} announced twice");
            assert!(lines[i - 1].starts_with(&format!("# HELP {name} ")));
            seen.push(name);
        } else if !line.starts_with('#') {
            let family = seen.last().unwrap();
            assert!(
                line.starts_with(family),
                "{line} outside its family {family}"
            );
        }
    }
    assert!(seen.contains(&"dapsync_ready"));
}

/// Issue 11: a run that could not keep a user object on the table succeeds, and `/status`
/// shows what was left behind under `last_run.warnings`.
#[test]
fn last_run_shows_the_user_objects_a_run_could_not_keep() {
    let status = Status::default();
    status.set_tables(&hourly(&["courses"]), &[]);
    let courses = id("courses");
    let warning = ObjectWarning {
        object: r#"view "public"."course_names""#.into(),
        message: "could not be recreated: column \"name\" does not exist".into(),
    };
    let mut run = report("courses", Kind::Snapshot, Utc::now(), 5);
    run.warnings = vec![warning.clone()];
    status.started(&courses);
    status.succeeded(&courses, &[run], Duration::from_secs(1));
    let view = status.table(&courses).unwrap();
    assert_eq!(view.state, TableState::Idle);
    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["last_run"]["outcome"], "success");
    assert_eq!(
        json["last_run"]["warnings"],
        serde_json::json!([{"object": warning.object, "message": warning.message}])
    );
}

#[test]
fn what_another_process_synced_shows_when_it_is_newer() {
    let status = Status::default();
    status.set_tables(&hourly(&["courses", "users"]), &[]);
    let courses = id("courses");
    status.started(&courses);
    assert!(
        status
            .failed(&courses, &failure(), Duration::from_secs(1))
            .is_some()
    );
    let now = Utc::now();
    let theirs = |table: &str, at: DateTime<Utc>| TableStatus {
        namespace: "canvas".into(),
        table: table.into(),
        synced_until: Some(at - TimeDelta::seconds(5)),
        schema_version: Some(2),
        row_count: Some(7),
        last_success_at: Some(at),
        ..TableStatus::default()
    };
    status.refresh_known(&[theirs("courses", now), theirs("quizzes", now)]);
    let view = status.table(&courses).unwrap();
    assert_eq!(view.last_success_at, Some(now));
    assert_eq!(view.synced_until, Some(now - TimeDelta::seconds(5)));
    assert_eq!((view.rows, view.schema_version), (Some(7), Some(2)));
    // This process's failures stay its own.
    assert_eq!(view.consecutive_failures, 1);
    // An older success changes nothing.
    status.refresh_known(&[theirs("courses", now - TimeDelta::seconds(60))]);
    let view = status.table(&courses).unwrap();
    assert_eq!(view.last_success_at, Some(now));
    assert_eq!(status.table(&id("users")).unwrap().last_success_at, None);
}
