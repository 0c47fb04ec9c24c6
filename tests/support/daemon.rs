//! Helpers for daemon tests: a daemon configuration, waiting on run events, HTTP requests to the
//! endpoint, and reading the fake's request log.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dapsync::app::Daemon;
use dapsync::config::{Config, CronSchedule, HumanDuration, NamespaceConfig};
use dapsync::fake::{Endpoint, FakeDap};
use dapsync::status::{RunEvent, RunEventKind, Status, StatusView, TableId};
use dapsync::sync::{Engine, ProgressMode};
use tokio::sync::broadcast;

use super::TestDb;

/// Longest wait for anything a daemon test waits for; only a broken daemon gets near it.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A daemon configuration on the fake and the test database: `tables` (`namespace.table`)
/// every second, fast retries, a short grace period, the endpoint on a free port.
pub fn config(fake: &FakeDap, db: &TestDb, tables: &[&str]) -> Config {
    let mut config = super::config(fake, db);
    config.sync.schedule = CronSchedule::parse("* * * * * *").unwrap();
    config.sync.run_attempts = 2;
    config.sync.run_backoff = HumanDuration(Duration::from_millis(50));
    config.sync.account_pause = HumanDuration(Duration::from_secs(2));
    config.sync.shutdown_grace = HumanDuration(Duration::from_secs(10));
    config.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.namespaces = selection(tables);
    config
}

/// `namespace.table` names as a per-namespace selection.
pub fn selection(tables: &[&str]) -> BTreeMap<String, NamespaceConfig> {
    let mut namespaces: BTreeMap<String, NamespaceConfig> = BTreeMap::new();
    for name in tables {
        let (namespace, table) = name.split_once('.').unwrap();
        let selection = namespaces
            .entry(namespace.to_owned())
            .or_insert_with(|| NamespaceConfig {
                tables: Vec::new(),
                ..NamespaceConfig::default()
            });
        selection.tables.push(table.to_owned());
    }
    namespaces
}

/// A table id from `namespace.table`.
pub fn id(name: &str) -> TableId {
    let (namespace, table) = name.split_once('.').unwrap();
    TableId::new(namespace, table)
}

/// Waits (at most [`PATIENCE`]) until `done` holds for the daemon's status.
pub async fn wait_for(status: &Status, what: &str, done: impl FnMut(&StatusView) -> bool) {
    tokio::time::timeout(PATIENCE, status.wait_for(done))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}: {:#?}", status.view()));
}

/// Waits until every table in `commits` is synced up to its commit time.
pub async fn wait_synced(status: &Status, commits: &[(TableId, DateTime<Utc>)]) {
    wait_for(status, "the tables to catch up", |view| {
        commits.iter().all(|(id, commit)| {
            view.tables.iter().any(|t| {
                t.namespace == id.namespace
                    && t.table == id.table
                    && t.synced_until.is_some_and(|until| until >= *commit)
            })
        })
    })
    .await;
}

/// The run events of a daemon, from subscription on.
pub struct Events {
    receiver: broadcast::Receiver<RunEvent>,
}

impl Events {
    pub fn new(status: &Status) -> Self {
        Self {
            receiver: status.subscribe(),
        }
    }

    /// The next event (at most [`PATIENCE`] away); panics if events were lost.
    pub async fn next(&mut self) -> RunEvent {
        tokio::time::timeout(PATIENCE, self.receiver.recv())
            .await
            .expect("timed out waiting for a run event")
            .expect("run events were lost")
    }

    /// Every event up to and including the first that matches.
    pub async fn until(&mut self, mut matches: impl FnMut(&RunEvent) -> bool) -> Vec<RunEvent> {
        let mut seen = Vec::new();
        loop {
            let event = self.next().await;
            let done = matches(&event);
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}

/// Whether the event is `kind`'s variant about `table`.
pub fn is(event: &RunEvent, table: &str, kind: impl Fn(&RunEventKind) -> bool) -> bool {
    event.table == id(table) && kind(&event.kind)
}

/// A GET to the daemon's endpoint: status, `Content-Type` and body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .tls_backend_rustls()
        .build()
        .unwrap();
    let answer = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let content_type = answer
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, answer.text().await.unwrap())
}

/// How many requests the fake answered on `endpoint` (for `table`, when given).
pub fn requests(fake: &FakeDap, endpoint: Endpoint, table: Option<&str>) -> usize {
    let path = table.map(|name| {
        let (namespace, table) = name.split_once('.').unwrap();
        format!("/dap/query/{namespace}/table/{table}/")
    });
    fake.requests()
        .iter()
        .filter(|r| r.endpoint == endpoint)
        .filter(|r| path.as_ref().is_none_or(|p| r.path.starts_with(p.as_str())))
        .count()
}

/// Starts a daemon on `config` as `dapsync run` does, with its events subscribed before the
/// first run.
pub async fn start(config: &Config) -> (Daemon, Events) {
    let engine = dapsync::app::engine(config, ProgressMode::Quiet)
        .await
        .unwrap();
    start_with(config, engine).await
}

/// [`start`] on an engine of the test's own.
pub async fn start_with(config: &Config, engine: Engine) -> (Daemon, Events) {
    let status = Status::new(Some(dapsync::app::dap_metrics(engine.dap().clone())));
    let events = Events::new(&status);
    let daemon = Daemon::start_with(config, engine, status).await.unwrap();
    (daemon, events)
}

/// Stops a daemon, letting running tables finish within the configured grace period.
pub async fn stop(daemon: Daemon) {
    daemon.shutdown(std::future::pending()).await;
}
