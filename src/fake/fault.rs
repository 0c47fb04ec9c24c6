//! Faults injected into the next requests to an endpoint.

use serde::{Deserialize, Serialize};

use super::table::TableName;

/// An endpoint of the fake, as fault targets and the request log name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /ids/auth/login`
    Login,
    /// `GET /dap/query/{namespace}/table`
    ListTables,
    /// `GET /dap/query/{namespace}/table/{table}/schema`
    GetSchema,
    /// `POST /dap/query/{namespace}/table/{table}/data`
    Query,
    /// `GET /dap/job/{id}`
    Job,
    /// `POST /dap/object/url`
    ObjectUrls,
    /// `GET` of a pre-signed object URL.
    Download,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 7] = [
        Endpoint::Login,
        Endpoint::ListTables,
        Endpoint::GetSchema,
        Endpoint::Query,
        Endpoint::Job,
        Endpoint::ObjectUrls,
        Endpoint::Download,
    ];

    /// The route pattern (axum syntax) the endpoint is served on.
    pub(super) fn route(self) -> &'static str {
        match self {
            Endpoint::Login => "/ids/auth/login",
            Endpoint::ListTables => "/dap/query/{namespace}/table",
            Endpoint::GetSchema => "/dap/query/{namespace}/table/{table}/schema",
            Endpoint::Query => "/dap/query/{namespace}/table/{table}/data",
            Endpoint::Job => "/dap/job/{id}",
            Endpoint::ObjectUrls => "/dap/object/url",
            Endpoint::Download => "/objects/{*id}",
        }
    }

    /// Whether the endpoint requires a bearer token (every `/dap/*` one).
    pub(super) fn needs_token(self) -> bool {
        !matches!(self, Endpoint::Login | Endpoint::Download)
    }

    /// Restricts a fault to requests about one table.
    pub fn table(self, namespace: impl Into<String>, table: impl Into<String>) -> Target {
        Target {
            endpoint: self,
            table: Some(TableName::new(namespace, table)),
        }
    }
}

/// Where a fault strikes: an endpoint, optionally only for requests about one table (the table
/// in the path, of the job, or of an object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub endpoint: Endpoint,
    #[serde(default)]
    pub table: Option<TableName>,
}

impl From<Endpoint> for Target {
    fn from(endpoint: Endpoint) -> Self {
        Target {
            endpoint,
            table: None,
        }
    }
}

/// The account-level error types (SPEC section 2), answered with HTTP 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountError {
    AccountNotOnboarded,
    AccountDisabled,
    AccountUnderMaintenance,
}

impl AccountError {
    pub(super) fn type_name(self) -> &'static str {
        match self {
            AccountError::AccountNotOnboarded => "AccountNotOnboarded",
            AccountError::AccountDisabled => "AccountDisabled",
            AccountError::AccountUnderMaintenance => "AccountUnderMaintenance",
        }
    }
}

/// Something going wrong on one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Fault {
    /// HTTP 429, with `Retry-After` in seconds if given.
    RateLimited { retry_after_secs: Option<u64> },
    /// An HTTP error status (400-599). A JSON body (`ProcessingError` for 500, a gateway
    /// `{"message"}` otherwise), or with `html` a non-JSON gateway page.
    Status { status: u16, html: bool },
    /// HTTP 403 with an account-level error.
    Account { error: AccountError },
    /// HTTP 404 NotFoundError (on download: S3's `NoSuchKey`).
    NotFound,
    /// HTTP 401 AuthenticationError although the token is valid.
    ExpiredToken,
    /// The query is answered with HTTP 400 SnapshotRequiredError.
    SnapshotRequired,
    /// The query is answered with HTTP 400 OutOfRangeError.
    OutOfRange,
    /// The job (started by this query, or polled now) fails with a ProcessingError.
    FailedJob,
    /// The download is refused with HTTP 403, as S3 does for an expired URL.
    ExpiredUrl,
    /// The gzip body stops in the middle of a record (a complete HTTP response of the cut bytes).
    /// A Parquet body stops halfway.
    CutMidRecord,
    /// The gzip body stops exactly after a record, sent chunked without `Content-Length` and
    /// ending cleanly: only the missing gzip trailer shows that data is missing. A Parquet body
    /// stops halfway, the same way (its footer is missing).
    CutAtRecordBoundary,
    /// `Content-Length` announces the whole object, then the connection closes halfway.
    DropConnection,
    /// Like `DropConnection`, but the connection closes after the object's first `bytes`
    /// bytes: a series of these, each further on, is a download that keeps breaking off
    /// while getting further each time.
    DropConnectionAfter { bytes: u64 },
    /// The body trickles in chunks of `chunk_bytes`, with `pause_ms` before each.
    SlowBody { chunk_bytes: usize, pause_ms: u64 },
    /// The schema endpoint answers with the version before the latest, as a lagging copy would,
    /// while jobs follow the latest.
    StaleSchema,
}

impl Fault {
    /// Whether the fault can happen on this endpoint.
    pub fn applies_to(&self, endpoint: Endpoint) -> bool {
        match self {
            Fault::RateLimited { .. } | Fault::Account { .. } => true,
            Fault::Status { status, .. } => (400..600).contains(status),
            Fault::NotFound => endpoint != Endpoint::Login,
            Fault::ExpiredToken => endpoint.needs_token(),
            Fault::SnapshotRequired | Fault::OutOfRange => endpoint == Endpoint::Query,
            Fault::FailedJob => matches!(endpoint, Endpoint::Query | Endpoint::Job),
            Fault::ExpiredUrl
            | Fault::CutMidRecord
            | Fault::CutAtRecordBoundary
            | Fault::DropConnection
            | Fault::DropConnectionAfter { .. } => endpoint == Endpoint::Download,
            Fault::SlowBody { chunk_bytes, .. } => {
                endpoint == Endpoint::Download && *chunk_bytes > 0
            }
            Fault::StaleSchema => endpoint == Endpoint::GetSchema,
        }
    }
}

/// A fault waiting for its requests.
#[derive(Debug, Clone)]
struct Rule {
    fault: Fault,
    target: Target,
    remaining: u32,
}

/// The faults waiting to strike, in the order they were injected.
#[derive(Debug, Default)]
pub(super) struct Faults {
    rules: Vec<Rule>,
}

impl Faults {
    /// Arms `fault` for the next `times` matching requests. The caller has checked
    /// [`Fault::applies_to`].
    pub(super) fn add(&mut self, fault: Fault, target: Target, times: u32) {
        if times > 0 {
            self.rules.push(Rule {
                fault,
                target,
                remaining: times,
            });
        }
    }

    /// Takes the first fault armed for this request, if any.
    pub(super) fn take(&mut self, endpoint: Endpoint, tables: &[TableName]) -> Option<Fault> {
        let position = self.rules.iter().position(|rule| {
            rule.target.endpoint == endpoint
                && rule
                    .target
                    .table
                    .as_ref()
                    .is_none_or(|table| tables.contains(table))
        })?;
        let rule = &mut self.rules[position];
        rule.remaining -= 1;
        let fault = rule.fault.clone();
        if rule.remaining == 0 {
            self.rules.remove(position);
        }
        Some(fault)
    }

    /// Whether any fault is armed for this endpoint (only then are a request's tables looked up).
    pub(super) fn any_for(&self, endpoint: Endpoint) -> bool {
        self.rules
            .iter()
            .any(|rule| rule.target.endpoint == endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_strike_the_matching_requests_the_given_number_of_times() {
        let mut faults = Faults::default();
        faults.add(
            Fault::NotFound,
            Endpoint::Download.table("canvas", "courses"),
            1,
        );
        faults.add(Fault::ExpiredUrl, Endpoint::Download.into(), 2);
        let courses = [TableName::new("canvas", "courses")];
        let users = [TableName::new("canvas", "users")];
        assert_eq!(faults.take(Endpoint::Job, &courses), None);
        assert_eq!(
            faults.take(Endpoint::Download, &users),
            Some(Fault::ExpiredUrl)
        );
        assert_eq!(
            faults.take(Endpoint::Download, &courses),
            Some(Fault::NotFound)
        );
        assert_eq!(
            faults.take(Endpoint::Download, &courses),
            Some(Fault::ExpiredUrl)
        );
        assert_eq!(faults.take(Endpoint::Download, &courses), None);
        assert!(!faults.any_for(Endpoint::Download));
    }

    #[test]
    fn faults_apply_only_where_they_make_sense() {
        assert!(Fault::FailedJob.applies_to(Endpoint::Job));
        assert!(!Fault::FailedJob.applies_to(Endpoint::Download));
        assert!(!Fault::ExpiredToken.applies_to(Endpoint::Login));
        assert!(
            !Fault::Status {
                status: 200,
                html: false
            }
            .applies_to(Endpoint::Job)
        );
        assert!(
            !Fault::SlowBody {
                chunk_bytes: 0,
                pause_ms: 1
            }
            .applies_to(Endpoint::Download)
        );
        let json = serde_json::json!({"type": "rate_limited", "retry_after_secs": 2});
        assert_eq!(
            serde_json::from_value::<Fault>(json).unwrap(),
            Fault::RateLimited {
                retry_after_secs: Some(2)
            }
        );
    }
}
