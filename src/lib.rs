//! dapsync keeps a database copy of Instructure DAP (Canvas Data 2) tables.
//!
//! Module map (arrows mean "may use"; nothing points back up):
//!
//! ```text
//! main.rs ─► cli ─► app (the one place where everything is wired)
//!                    ├─► scheduler ─► sync ─► dap      (HTTP client for the DAP API; no SQL)
//!                    ├─► http            │  ├► db ─► sql ─► schema
//!                    └─► telemetry       │  └► status (read model: per-table state, lag, last error)
//!                                        └─► http reads status only
//! config, error, secret: type-only leaves anyone may use.
//! fake: a fake DAP server for tests, the demo and the benchmark; uses nothing else.
//! notify (systemd notifications), webhook (failing/recovered POSTs): leaves app and scheduler use.
//! export: `dapsync snapshot` / `incremental`, a job's objects saved as files with a manifest
//! (uses dap; its command shell uses app).
//! demo: `dapsync demo`, the fake server and the real daemon together (uses app, fake, cli's
//! status table).
//! ```

pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod dap;
pub mod db;
pub mod demo;
pub mod error;
pub mod export;
pub mod failpoint;
pub mod fake;
pub mod http;
pub mod notify;
pub mod scheduler;
pub mod schema;
pub mod secret;
pub mod sql;
pub mod status;
pub mod sync;
pub mod telemetry;
pub mod webhook;
