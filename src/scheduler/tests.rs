use super::*;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

#[tokio::test]
async fn day_of_month_and_day_of_week_combine_as_in_classic_cron() {
    // Fridays and the 13th of each month: either runs (both would make a Friday the 13th,
    // months apart).
    let schedule = CronSchedule::parse("0 0 13 * FRI").unwrap();
    let after = at("2026-12-02T10:00:00Z");
    assert_eq!(schedule.next_after(after), Some(at("2026-12-04T00:00:00Z")));
    assert_eq!(
        schedule.next_after(at("2027-01-09T00:00:00Z")),
        Some(at("2027-01-13T00:00:00Z"))
    );
    // The job the scheduler runs ticks by the same rule: within a week of now.
    let mut cron = JobScheduler::new().await.unwrap();
    let id = cron.add(cron_job(&schedule, || {}).unwrap()).await.unwrap();
    let next = cron.next_tick_for_job(id).await.unwrap().unwrap();
    assert!(next - Utc::now() <= chrono::TimeDelta::days(7), "{next}");
    assert_eq!(schedule.next_after(Utc::now()), Some(next));
    cron.shutdown().await.unwrap();
}

#[test]
fn a_table_is_overdue_when_it_missed_a_tick() {
    let hourly = CronSchedule::hourly();
    let now = at("2026-01-01T10:20:00Z");
    assert!(overdue(&hourly, None, now));
    assert!(overdue(&hourly, Some(at("2026-01-01T09:59:59Z")), now));
    assert!(!overdue(&hourly, Some(at("2026-01-01T10:00:00Z")), now));
    assert!(!overdue(&hourly, Some(at("2026-01-01T10:05:00Z")), now));
    assert!(overdue(
        &hourly,
        Some(at("2026-01-01T09:59:59.5Z")),
        at("2026-01-01T10:00:00.2Z")
    ));
    let every_15 = CronSchedule::parse("*/15 * * * *").unwrap();
    assert!(overdue(&every_15, Some(at("2026-01-01T10:05:00Z")), now));
}

#[test]
fn schedules_come_from_the_namespace_or_the_default() {
    let mut canvas = NamespaceConfig::default();
    canvas.schedules.insert(
        "submission*".into(),
        CronSchedule::parse("*/30 * * * *").unwrap(),
    );
    let options = SchedulerOptions {
        namespaces: BTreeMap::from([("canvas".to_owned(), canvas)]),
        schedule: CronSchedule::hourly(),
        max_concurrent_tables: 4,
        run_attempts: 3,
        run_backoff: Duration::from_secs(30),
        account_pause: Duration::from_secs(1800),
        refresh_tables: Duration::from_secs(3600),
        shutdown_grace: Duration::from_secs(60),
    };
    let submissions = TableId::new("canvas", "submissions");
    assert_eq!(
        options.schedule_for(&submissions).as_str(),
        "0 */30 * * * *"
    );
    let courses = TableId::new("canvas", "courses");
    assert_eq!(options.schedule_for(&courses).as_str(), "0 0 * * * *");
    let logs = TableId::new("canvas_logs", "web_logs");
    assert_eq!(options.schedule_for(&logs).as_str(), "0 0 * * * *");
}

#[test]
fn without_the_api_known_and_named_tables_are_scheduled() {
    let namespaces = BTreeMap::from([
        (
            "canvas".to_owned(),
            NamespaceConfig {
                tables: vec!["all".into()],
                exclude: vec!["quiz_*".into()],
                ..NamespaceConfig::default()
            },
        ),
        (
            "canvas_logs".to_owned(),
            NamespaceConfig {
                tables: vec!["web_logs".into()],
                ..NamespaceConfig::default()
            },
        ),
    ]);
    let known = |ns: &str, t: &str| TableStatus {
        namespace: ns.into(),
        table: t.into(),
        ..TableStatus::default()
    };
    let tables = fallback_tables(
        &namespaces,
        &[
            known("canvas", "courses"),
            known("canvas", "quiz_questions"),
            known("new_quizzes", "quizzes"),
        ],
    );
    assert_eq!(
        tables,
        [
            TableId::new("canvas", "courses"),
            TableId::new("canvas_logs", "web_logs"),
        ]
    );
}
