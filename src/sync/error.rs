//! Why a table could not be synced: the table, once, and what went wrong with it.

use std::fmt;

use crate::dap::DapError;
use crate::destination::{DbError, DestinationError, RunError};
use crate::schema::SchemaError;
use crate::status::Failure;
use crate::table::TableId;

/// Why a table could not be synced: the table, once, and what went wrong with it.
#[derive(Debug)]
pub struct SyncError {
    pub table: TableId,
    pub kind: SyncErrorKind,
}

/// What went wrong with a table's run.
#[derive(Debug, thiserror::Error)]
pub enum SyncErrorKind {
    #[error("is being synced by another process")]
    Locked,
    #[error("DAP request failed")]
    Dap(#[source] DapError),
    #[error("database operation failed")]
    Db(#[source] DbError),
    #[error("the schema cannot be used")]
    Schema(#[source] SchemaError),
    /// A destination's own error (the database destination's are [`SyncErrorKind::Db`]).
    #[error("destination operation failed")]
    Destination(#[source] DestinationError),
    #[error("{count} invalid record(s) and on_invalid_record = \"fail\"; the first {reason}")]
    InvalidRecords { count: usize, reason: String },
    #[error(
        "{count} of {records} record(s) rejected, above sync.max_rejected_fraction; nothing was applied; the first {reason}"
    )]
    TooManyRejects {
        count: u64,
        records: u64,
        reason: String,
    },
    #[error(
        "the job's records follow schema version {job}, but DAP describes version {described}; not loaded, tried again later"
    )]
    SchemaVersion { job: i64, described: i64 },
    #[error("{0}")]
    State(String),
}

impl From<DapError> for SyncErrorKind {
    fn from(source: DapError) -> Self {
        Self::Dap(source)
    }
}

impl From<DbError> for SyncErrorKind {
    fn from(source: DbError) -> Self {
        Self::Db(source)
    }
}

impl From<DestinationError> for SyncErrorKind {
    fn from(source: DestinationError) -> Self {
        match source {
            DestinationError::Db(source) => Self::Db(source),
            DestinationError::Schema(source) => Self::Schema(source),
            DestinationError::Dap(source) => Self::Dap(source),
            other => Self::Destination(other),
        }
    }
}

impl From<SchemaError> for SyncErrorKind {
    fn from(source: SchemaError) -> Self {
        Self::Schema(source)
    }
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            SyncErrorKind::Locked => write!(f, "{} {}", self.table, self.kind),
            _ => write!(f, "{}: {}", self.table, self.kind),
        }
    }
}

impl std::error::Error for SyncError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

impl SyncError {
    /// What the read model keeps of the error.
    pub fn failure(&self) -> Failure {
        Failure {
            error_type: self.type_name(),
            uuid: self.uuid().map(str::to_owned),
            message: self.chain(),
        }
    }

    /// `kind` of error, for `table`.
    pub fn new(table: TableId, kind: SyncErrorKind) -> Self {
        Self { table, kind }
    }

    /// Whether the next attempt may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match &self.kind {
            SyncErrorKind::Locked | SyncErrorKind::SchemaVersion { .. } => true,
            SyncErrorKind::Dap(source) => source.is_transient(),
            SyncErrorKind::Db(source) => source.is_transient(),
            SyncErrorKind::Destination(source) => source.is_transient(),
            SyncErrorKind::Schema(_)
            | SyncErrorKind::InvalidRecords { .. }
            | SyncErrorKind::TooManyRejects { .. }
            | SyncErrorKind::State(_) => false,
        }
    }

    /// Whether another process held the table.
    pub fn is_locked(&self) -> bool {
        matches!(self.kind, SyncErrorKind::Locked)
    }

    /// Whether every table should pause (an account-level DAP error).
    pub fn is_account_level(&self) -> bool {
        matches!(&self.kind, SyncErrorKind::Dap(source) if source.is_account_level())
    }

    /// A short name for the kind of error: the DAP error type where there is one.
    pub fn type_name(&self) -> String {
        match &self.kind {
            SyncErrorKind::Locked => "Locked".into(),
            SyncErrorKind::Dap(source) => source.type_name().to_owned(),
            SyncErrorKind::Db(DbError::LockLost { .. }) => "LockLost".into(),
            SyncErrorKind::Db(_) => "DatabaseError".into(),
            SyncErrorKind::Destination(_) => "DestinationError".into(),
            SyncErrorKind::Schema(_) => "SchemaError".into(),
            SyncErrorKind::InvalidRecords { .. } => "InvalidRecords".into(),
            SyncErrorKind::TooManyRejects { .. } => "TooManyRejects".into(),
            SyncErrorKind::SchemaVersion { .. } => "SchemaVersionMismatch".into(),
            SyncErrorKind::State(_) => "StateError".into(),
        }
    }

    /// The DAP error uuid, if the error came from the API.
    pub fn uuid(&self) -> Option<&str> {
        match &self.kind {
            SyncErrorKind::Dap(source) => source.uuid(),
            _ => None,
        }
    }

    /// The error and its causes on one line.
    pub fn chain(&self) -> String {
        crate::error::chain(self)
    }

    pub(super) fn run_error(&self) -> RunError {
        RunError {
            error_type: self.type_name(),
            uuid: self.uuid().map(str::to_owned),
            message: self.chain(),
        }
    }
}
