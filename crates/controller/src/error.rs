//! The controller's one error type.

/// Everything a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed while {action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },

    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    #[error("could not pin Task {task}: {error}")]
    Pin { task: String, error: String },

    #[error("object has no {0}")]
    Incomplete(&'static str),

    #[error("could not write the admission rules: {0}")]
    Confinement(String),
}

/// `Result` with the controller's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every value [`Error::metric_label`] can take, so each series exists from
/// the start and `rate()` sees the first error of each kind.
pub const METRIC_REASONS: &[&str] = &[
    "api_forbidden",
    "api_not_found",
    "api_conflict",
    "api_invalid",
    "api_too_many_requests",
    "api_server_error",
    "api_other",
    "api_unreachable",
    "finalizer",
    "pin_failed",
    "incomplete_object",
    "confinement_failed",
];

impl Error {
    /// What failed and the API server's own words, for a condition message
    /// (the `Display` form also carries the whole API `Status`).
    pub fn one_line(&self) -> String {
        match self {
            Error::Kube {
                action,
                source: kube::Error::Api(status),
            } => format!(
                "{action}: {} ({})",
                status.message.replace('\n', " "),
                status.reason
            ),
            other => other.to_string(),
        }
    }

    /// A low-cardinality label for the `reason` of the errors metric.
    pub fn metric_label(&self) -> String {
        match self {
            Error::Kube {
                source: kube::Error::Api(status),
                ..
            } => match status.code {
                403 => "api_forbidden",
                404 => "api_not_found",
                409 => "api_conflict",
                422 => "api_invalid",
                429 => "api_too_many_requests",
                500..=599 => "api_server_error",
                _ => "api_other",
            }
            .into(),
            Error::Kube { .. } => "api_unreachable".into(),
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer".into(),
            },
            Error::Pin { .. } => "pin_failed".into(),
            Error::Incomplete(_) => "incomplete_object".into(),
            Error::Confinement(_) => "confinement_failed".into(),
        }
    }
}

/// Attaches what the controller was doing to a kube error.
pub(crate) trait Doing<T> {
    fn doing(self, action: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Doing<T> for std::result::Result<T, kube::Error> {
    fn doing(self, action: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Kube {
            action: action(),
            source,
        })
    }
}
