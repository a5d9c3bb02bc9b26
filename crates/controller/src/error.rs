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
}

/// `Result` with the controller's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A low-cardinality label for the `reason` of the errors metric.
    pub fn metric_label(&self) -> String {
        match self {
            Error::Kube {
                source: kube::Error::Api(status),
                ..
            } => {
                format!("api_{}", status.reason.to_lowercase())
            }
            Error::Kube { .. } => "api_unreachable".into(),
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer".into(),
            },
            Error::Pin { .. } => "pin_failed".into(),
            Error::Incomplete(_) => "incomplete_object".into(),
        }
    }
}

/// Attaches what the controller was doing to a kube error.
pub(crate) trait Context<T> {
    fn doing(self, action: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, kube::Error> {
    fn doing(self, action: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Kube {
            action: action(),
            source,
        })
    }
}
