//! A fake DAP server (axum on loopback) for tests, the demo and the benchmark.
//!
//! It implements every endpoint of the DAP API (SPEC section 1) with the real shapes, status codes
//! and error bodies, independently of the client in [`crate::dap`], so that it checks the client
//! rather than mirroring it. Tables hold a few bytes per row; row contents are generated from the
//! seed whenever a query needs them, and results are written to a temporary directory in the
//! format the query asks for ([`Format`]: gzip JSON Lines, TSV or CSV, or Parquet), so a table can
//! have millions of rows. Faults can be injected per endpoint, every request is recorded, and an
//! admin API under `/_fake/` drives a standalone server.

mod admin;
mod auth;
mod error;
mod extract;
mod fault;
mod fixture;
mod format;
mod generator;
mod job;
mod limit;
mod object;
mod server;
mod table;
#[cfg(test)]
mod tests;
mod world;

use std::future::{Future, IntoFuture};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{info, warn};

use crate::secret::Secret;

pub use error::FakeError;
pub use fault::{AccountError, Endpoint, Fault, Target};
pub use fixture::{fixture_schema, fixture_tables};
pub use format::{Format, Mode};
pub use limit::RateLimits;
pub use server::RecordedRequest;
pub use table::{Changes, TableName};
pub use world::FakeClock;

use generator::{mix, text_hash};
use server::{App, Inner, Settings};
use world::World;

/// How a fake server starts.
#[derive(Debug, Clone)]
pub struct FakeDapConfig {
    /// The only client id the login accepts.
    pub client_id: String,
    /// The only client secret the login accepts.
    pub client_secret: Secret,
    /// Decides every generated row and every change round.
    pub seed: u64,
    /// Lifetime of access tokens (short ones let tests exercise renewal).
    pub token_lifetime: Duration,
    /// Polls a job spends `waiting`, then as many `running`; 0 lets the query answer with a
    /// complete job.
    pub job_polls: u32,
    /// Jobs and their objects are gone this long after the query.
    pub job_lifetime: Duration,
    /// Pre-signed URLs expire this long after they are handed out.
    pub url_lifetime: Duration,
    /// Records per result object, unless a table says otherwise.
    pub rows_per_object: usize,
    /// Every fixture table is served, with a number of rows drawn from this range per table;
    /// `None` serves only `tables`.
    pub fixture_rows: Option<RangeInclusive<u64>>,
    /// Tables to serve besides (or instead of) the fixture defaults.
    pub tables: Vec<FakeTable>,
    /// The wall clock, or a fixed instant for byte-for-byte reproducible runs.
    pub clock: FakeClock,
    /// The API's rate limits ([`RateLimits::api`]), or none: the default, so that tests may
    /// query as fast as they like.
    pub rate_limits: Option<RateLimits>,
}

impl Default for FakeDapConfig {
    fn default() -> Self {
        Self {
            client_id: "us-east-1#fake-client".to_owned(),
            client_secret: Secret::new("fake-secret"),
            seed: 42,
            token_lifetime: Duration::from_secs(3600),
            job_polls: 1,
            job_lifetime: Duration::from_secs(24 * 3600),
            url_lifetime: Duration::from_secs(15 * 60),
            rows_per_object: 1000,
            fixture_rows: Some(0..=20),
            tables: Vec::new(),
            clock: FakeClock::Wall,
            rate_limits: None,
        }
    }
}

/// A table to serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FakeTable {
    pub namespace: String,
    pub table: String,
    /// Live rows in the initial commit.
    pub rows: u64,
    /// Overrides [`FakeDapConfig::rows_per_object`].
    #[serde(default)]
    pub rows_per_object: Option<usize>,
    /// The table's JSON Schema (version 1); `None` takes the embedded fixture of that name.
    #[serde(default)]
    pub schema: Option<Value>,
    /// Adds a bad line to results after every row whose index is a multiple of this: in turn a
    /// line that is not JSON, a key of the wrong type, and a property the schema does not know.
    /// The bad lines name keys no row has, so the table's rows are unaffected.
    #[serde(default)]
    pub bad_lines_every: Option<u64>,
}

impl FakeTable {
    /// A fixture table with `rows` rows.
    pub fn new(namespace: impl Into<String>, table: impl Into<String>, rows: u64) -> Self {
        Self {
            namespace: namespace.into(),
            table: table.into(),
            rows,
            rows_per_object: None,
            schema: None,
            bad_lines_every: None,
        }
    }
}

/// A running fake DAP server. Dropping it stops the server; [`FakeDap::shutdown`] also waits.
///
/// The test API panics on misuse (an unknown table, a schema without key, a fault that cannot
/// happen on its endpoint), as an assertion would.
#[derive(Debug)]
pub struct FakeDap {
    app: App,
    task: JoinHandle<io::Result<()>>,
    stop: DropGuard,
}

#[track_caller]
fn or_panic<T>(result: Result<T, FakeError>) -> T {
    result.unwrap_or_else(|error| panic!("{error}"))
}

impl FakeDap {
    /// Starts a server on a free loopback port.
    pub async fn start(config: FakeDapConfig) -> io::Result<FakeDap> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts a server on `addr` (its URLs name 127.0.0.1 when `addr` is unspecified).
    pub async fn start_on(addr: SocketAddr, config: FakeDapConfig) -> io::Result<FakeDap> {
        let world = initial_world(&config)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let host = if local.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            local.ip()
        };
        let settings = Settings {
            base_url: format!("http://{}", SocketAddr::new(host, local.port())),
            client_id: config.client_id,
            client_secret: config.client_secret,
            token_lifetime: config.token_lifetime,
            job_polls: config.job_polls,
            job_lifetime: config.job_lifetime,
            url_lifetime: config.url_lifetime,
        };
        let dir = tempfile::Builder::new()
            .prefix("dapsync-fake-dap-")
            .tempdir()?;
        let app = Arc::new(Inner::new(settings, world, dir, config.rate_limits));
        let stop = CancellationToken::new();
        let serve = axum::serve(listener, server::router(app.clone()))
            .with_graceful_shutdown(stop.clone().cancelled_owned());
        let task = tokio::spawn(serve.into_future());
        Ok(FakeDap {
            app,
            task,
            stop: stop.drop_guard(),
        })
    }

    /// Such as `http://127.0.0.1:41234`: the base URL for the client.
    pub fn base_url(&self) -> &str {
        &self.app.settings.base_url
    }

    /// The client id the login accepts.
    pub fn client_id(&self) -> &str {
        &self.app.settings.client_id
    }

    /// The client secret the login accepts.
    pub fn client_secret(&self) -> &Secret {
        &self.app.settings.client_secret
    }

    /// Adds a table, or replaces one of the same name, with its rows in a new commit.
    #[track_caller]
    pub fn add_table(&self, table: FakeTable) {
        or_panic(self.app.world().add_table(table));
    }

    /// Applies one change round to a table; returns its commit time.
    #[track_caller]
    pub fn advance(&self, namespace: &str, table: &str, changes: Changes) -> DateTime<Utc> {
        or_panic(
            self.app
                .world()
                .advance(&TableName::new(namespace, table), changes),
        )
    }

    /// Adds a schema version (a JSON Schema, no envelope) and returns its number. Without
    /// `rewrite` (in-place changes) rows keep the version they were written under until they
    /// change; with it every live row is rewritten in a new commit and incrementals from before
    /// that commit get SnapshotRequiredError.
    #[track_caller]
    pub fn bump_schema(&self, namespace: &str, table: &str, schema: Value, rewrite: bool) -> i64 {
        or_panic(
            self.app
                .world()
                .bump_schema(&TableName::new(namespace, table), schema, rewrite),
        )
    }

    /// An upstream reload: every live row is committed again, and incrementals from before now
    /// get SnapshotRequiredError. Returns the reload's commit time.
    #[track_caller]
    pub fn require_snapshot(&self, namespace: &str, table: &str) -> DateTime<Utc> {
        or_panic(
            self.app
                .world()
                .require_snapshot(&TableName::new(namespace, table)),
        )
    }

    /// Incrementals whose `since` is older than `retention` get OutOfRangeError (`None`: keep
    /// everything). `canvas_logs.web_logs` keeps 30 days by default.
    #[track_caller]
    pub fn set_retention(
        &self,
        namespace: &str,
        table: &str,
        retention: impl Into<Option<Duration>>,
    ) {
        or_panic(
            self.app
                .world()
                .set_retention(&TableName::new(namespace, table), retention.into()),
        );
    }

    /// Arms `fault` for the next `times` requests to `on`: an [`Endpoint`], or one restricted
    /// to a table with [`Endpoint::table`].
    #[track_caller]
    pub fn inject(&self, fault: Fault, on: impl Into<Target>, times: u32) {
        or_panic(self.app.inject(fault, on.into(), times));
    }

    /// Disarms every fault not yet struck.
    pub fn clear_faults(&self) {
        self.app.clear_faults();
    }

    /// Every request received so far, oldest first (admin requests excepted).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.app.requests().clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.app.requests().clear();
    }

    /// The latest state of every live row, `{"key": .., "value": ..}` in key order: what a
    /// replica should hold.
    #[track_caller]
    pub fn current_rows(&self, namespace: &str, table: &str) -> Vec<Value> {
        or_panic(
            self.app
                .world()
                .table(&TableName::new(namespace, table))
                .map(|t| t.current_rows()),
        )
    }

    /// The schema envelope `{"schema": S, "version": N}` the schema endpoint returns now.
    #[track_caller]
    pub fn schema(&self, namespace: &str, table: &str) -> Value {
        let world = self.app.world();
        let schema = or_panic(world.table(&TableName::new(namespace, table))).latest_schema();
        json!({"schema": schema.schema, "version": schema.version})
    }

    /// The time of the table's latest commit (a snapshot's `at`).
    #[track_caller]
    pub fn latest_commit(&self, namespace: &str, table: &str) -> DateTime<Utc> {
        or_panic(
            self.app
                .world()
                .table(&TableName::new(namespace, table))
                .map(|t| t.latest_commit()),
        )
    }

    /// Sets the API's rate limits (`None`: none), starting with empty windows.
    pub fn set_rate_limits(&self, limits: Option<RateLimits>) {
        self.app.set_rate_limits(limits);
    }

    /// The most requests to `endpoint` the fake accepted (answered other than 429) within any
    /// `window`, since the request log was last cleared: with [`Endpoint::Query`] and a minute,
    /// the most queries started in any minute, which the API's limit bounds.
    pub fn busiest(&self, endpoint: Endpoint, window: Duration) -> usize {
        self.app.busiest(endpoint, window)
    }

    /// Moves the fake's clock forward: tokens, URLs and jobs expire as if that time had passed,
    /// and later commits are at least that much later.
    pub fn travel(&self, by: Duration) {
        self.app.world().clock.travel(by);
    }

    /// Stops the server and waits (a few seconds at most) for open requests to end.
    pub async fn shutdown(self) {
        let FakeDap { mut task, stop, .. } = self;
        drop(stop);
        match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
            Ok(Ok(Err(error))) => warn!(%error, "the fake dap server failed"),
            Ok(_) => {}
            Err(_) => task.abort(),
        }
    }
}

/// The tables a server starts with: the fixtures (if asked for), then the configured ones.
fn initial_world(config: &FakeDapConfig) -> Result<World, FakeError> {
    let mut world = World::new(config.seed, config.rows_per_object, config.clock);
    if let Some(range) = &config.fixture_rows {
        let span = range.end().saturating_sub(*range.start()).saturating_add(1);
        for (namespace, table) in fixture_tables() {
            let rows = range.start() + mix(&[config.seed, text_hash(table)]) % span;
            world.add_table(FakeTable::new(namespace, table, rows))?;
        }
    }
    for table in &config.tables {
        world.add_table(table.clone())?;
    }
    Ok(world)
}

/// Serves a fake DAP server on `addr` until `shutdown` completes (`dapsync fake-dap`).
pub async fn serve_until(
    config: FakeDapConfig,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let fake = FakeDap::start_on(addr, config).await?;
    info!(base_url = %fake.base_url(), client_id = %fake.client_id(), "fake dap server listening");
    shutdown.await;
    fake.shutdown().await;
    info!("fake dap server stopped");
    Ok(())
}
