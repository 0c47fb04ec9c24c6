//! dapsync keeps a database copy of Instructure DAP (Canvas Data 2) tables.
//!
//! Module map (arrows mean "may use"; nothing points back up):
//!
//! ```text
//! main.rs ─► cli ─► app (the one place where everything is wired)
//!                    ├─► scheduler ─► sync ─► dap      (HTTP client for the DAP API; no SQL)
//!                    ├─► http            │  ├► destination ─► db ─► sql ─► schema
//!                    └─► telemetry       │  └► status (read model: per-table state, lag, last error)
//!                                        └─► http reads status, and acts through the
//!                                            scheduler's `Control` handle (the control API)
//! config, error, table (TableId, TableStatus), run (RunOutcome, ObjectWarning), histogram, secret,
//! failpoint, hash: type-only leaves anyone may use.
//! ```
//!
//! The arrows one module a line, as `tests/architecture.rs` reads them: it builds the graph from
//! the `use crate::...` lines and `crate::x::` paths of `src/**/*.rs` and fails on any arrow not
//! listed here. Leaves may use only leaves.
//!
//! ```text
//! arrows:
//! cli       ─► app sync status db dap fake schema sql telemetry export
//! app       ─► scheduler http telemetry notify webhook sync status dap db sql schema export destination
//! scheduler ─► sync status webhook
//! http      ─► status scheduler
//! webhook   ─► status dap
//! notify    ─►
//! telemetry ─►
//! sync      ─► dap destination schema status
//! destination ─► db sql schema dap export
//! status    ─►
//! dap       ─►
//! db        ─► sql schema
//! sql       ─► schema
//! schema    ─►
//! fake      ─►
//! export    ─► dap
//! leaves    ─► config error table run histogram secret failpoint hash
//! ```
//!
//! - `cli` holds the commands (`cli/official`: the official `dap` client's options and database
//!   commands, mapped onto dapsync's), `demo` (the fake server and the real daemon together) and `bench`
//!   (which measures the database and the API directly, so it uses them directly).
//! - `status` uses leaves only: `sync` and `scheduler` hand it plain summaries of runs and errors,
//!   and `app` wires the DAP client's counters into `/metrics` (`app/dap_metrics`).
//! - `destination`: what a table run needs of its target, as one trait (`Destination`); the
//!   database destination implements it over `db`, and `sync` reaches the database only through it.
//! - `export`: the file commands' work (a job's objects saved as files with a manifest); their
//!   command shell is `cli/export`.
//! - `fake`: the fake DAP server for tests, the demo and the benchmark.

pub mod app;
pub mod cli;
pub mod config;
pub mod dap;
pub mod db;
pub mod destination;
pub mod error;
pub mod export;
pub mod failpoint;
pub mod fake;
pub mod hash;
pub mod histogram;
pub mod http;
pub mod notify;
pub mod run;
pub mod scheduler;
pub mod schema;
pub mod secret;
pub mod sql;
pub mod status;
pub mod sync;
pub mod table;
pub mod telemetry;
pub mod webhook;
