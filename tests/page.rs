//! The status page at `/` in a real headless browser (Debian's Chromium through ChromeDriver):
//! it shows a running daemon's tables with their state, its latest runs, reloads itself, and the
//! browser logs no console error.

use dapsync::config::{Config, CronSchedule};
use dapsync::fake::FakeDap;
use dapsync::secret::Secret;
use dapsync::sql::Dialect;

use crate::support::browser::Browser;
use crate::support::daemon::{self, id, start, stop, wait_for, wait_synced};
use crate::support::{self, TestDb};

const TOKEN: &str = "page-test-token";
const TABLES: [&str; 2] = ["canvas.courses", "canvas.users"];

/// Hourly, so that only the first runs happen on their own; the control token to pause with.
fn config(fake: &FakeDap, db: &TestDb) -> Config {
    let mut config = daemon::config(fake, db, &TABLES);
    config.sync.schedule = CronSchedule::parse("0 0 * * * *").unwrap();
    config.http.control_token = Some(Secret::new(TOKEN));
    config
}

async fn post(addr: std::net::SocketAddr, path: &str) -> u16 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .tls_backend_rustls()
        .build()
        .unwrap()
        .post(format!("http://{addr}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_tables_in_a_browser() {
    let fake = support::fake(&[("canvas", "courses", 40), ("canvas", "users", 25)]).await;
    let db = TestDb::new(Dialect::Sqlite).await;
    let (daemon, _events) = start(&config(&fake, &db)).await;
    let commits: Vec<_> = TABLES
        .iter()
        .map(|t| (id(t), fake.latest_commit("canvas", &id(t).table)))
        .collect();
    wait_synced(daemon.status(), &commits).await;
    let addr = daemon.http_addr().unwrap();
    assert_eq!(post(addr, "/tables/canvas/users/pause").await, 200);

    let browser = Browser::start().await;
    browser.open(&format!("http://{addr}/")).await;
    assert_eq!(browser.title().await, "dapsync status");
    let rows = browser.texts("#tables tbody tr").await;
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let courses = browser
        .texts("tr[data-table='canvas.courses']")
        .await
        .concat();
    assert!(courses.contains("canvas.courses"), "{courses}");
    assert!(courses.contains("idle"), "{courses}");
    // 40 rows, and the schedule.
    assert!(courses.contains("40"), "{courses}");
    assert!(courses.contains("0 0 * * * *"), "{courses}");
    let users = browser
        .texts("tr[data-table='canvas.users']")
        .await
        .concat();
    assert!(users.contains("paused"), "{users}");
    let runs = browser.texts("#runs tbody tr").await;
    for table in TABLES {
        assert!(
            runs.iter()
                .any(|r| r.contains(table) && r.contains("success")),
            "no successful run of {table}: {runs:#?}"
        );
    }

    // Resumed behind the page's back: the page reloads itself and shows it.
    assert_eq!(post(addr, "/tables/canvas/users/resume").await, 200);
    wait_for(daemon.status(), "users to be resumed", |view| {
        view.tables
            .iter()
            .all(|t| t.state == dapsync::status::TableState::Idle)
    })
    .await;
    browser
        .wait_text(
            "tr[data-table='canvas.users']",
            "the page to reload",
            |text| text.contains("idle"),
        )
        .await;

    let console = browser.console().await;
    let errors: Vec<_> = console
        .iter()
        .filter(|(level, _)| level == "SEVERE")
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    browser.close().await;
    stop(daemon).await;
}
