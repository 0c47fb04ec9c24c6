//! How runs of a table end, as plain data anyone may use: the outcome the run history stores and
//! the user objects a run could not keep. A type-only leaf.

use serde::{Deserialize, Serialize};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    Running,
    Success,
    Failed,
    /// The process died during the run; nothing of it was applied.
    Interrupted,
    /// An operator cancelled the run; nothing of it was applied.
    Cancelled,
}

impl RunOutcome {
    /// The outcome as the run history stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Success => "success",
            RunOutcome::Failed => "failed",
            RunOutcome::Interrupted => "interrupted",
            RunOutcome::Cancelled => "cancelled",
        }
    }

    /// The outcome of a stored name; unknown names read as `interrupted`.
    pub fn parse(text: &str) -> Self {
        match text {
            "success" => RunOutcome::Success,
            "failed" => RunOutcome::Failed,
            "running" => RunOutcome::Running,
            "cancelled" => RunOutcome::Cancelled,
            _ => RunOutcome::Interrupted,
        }
    }
}

/// A user object that dapsync could not keep on the new copy of a table. The run still
/// succeeded and the data is in place; the run's row in the run history lists these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectWarning {
    /// The object, as the database names it: `view "public"."course_names"`,
    /// `index "ix_courses_name"`, `grant on "canvas"."courses" to "reporting"`.
    pub object: String,
    /// What was not done, and why (the database's message where there is one).
    pub message: String,
}
