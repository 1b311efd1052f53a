//! What can go wrong for a client, and the exit code each maps to.

use tonic::Code;

/// A client-side failure, worded for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach any controller ({addrs}): {reason}")]
    Unreachable { addrs: String, reason: String },
    #[error("{0}")]
    NotFound(String),
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// Not logged in, or a token that is expired, revoked or unknown.
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("controller error ({code:?}): {message}")]
    Server { code: Code, message: String },
    /// `cluster status` or `cluster wait` found the cluster degraded, or its answer
    /// partial: look at (or start) the nodes named.
    #[error("cluster not healthy: {0}")]
    Unhealthy(String),
    /// Some of several files failed (each was reported); the others succeeded.
    #[error("{0}")]
    SomeFailed(String),
}

impl ClientError {
    /// The process exit code for this error (2 is left to argument errors).
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Unreachable { .. } => 3,
            ClientError::NotFound(_) => 4,
            ClientError::Unavailable(_) => 5,
            ClientError::Integrity(_) => 6,
            ClientError::InvalidArgument(_) => 2,
            ClientError::Unauthenticated(_) => 7,
            ClientError::PermissionDenied(_) => 8,
            ClientError::AlreadyExists(_) => 9,
            ClientError::Unhealthy(_) => 10,
            ClientError::Io { .. } | ClientError::Server { .. } | ClientError::SomeFailed(_) => 1,
        }
    }

    pub fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        ClientError::Io {
            path: path.to_string(),
            source,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        let message = s.message().to_string();
        match s.code() {
            Code::NotFound => ClientError::NotFound(message),
            Code::InvalidArgument | Code::OutOfRange => ClientError::InvalidArgument(message),
            // A status made on this side from a connection error carries its cause;
            // one sent by the controller does not.
            Code::Unavailable if std::error::Error::source(&s).is_some() => {
                ClientError::Unreachable {
                    addrs: "the connected controller".into(),
                    reason: message,
                }
            }
            // A connection lost midway (the controller died): made on this side too.
            Code::Unknown | Code::Internal | Code::Cancelled
                if std::error::Error::source(&s).is_some() =>
            {
                ClientError::Unreachable {
                    addrs: "the connected controller".into(),
                    reason: format!("connection lost: {message}"),
                }
            }
            Code::Unavailable | Code::ResourceExhausted => ClientError::Unavailable(message),
            Code::DataLoss => ClientError::Integrity(message),
            Code::Unauthenticated => ClientError::Unauthenticated(message),
            Code::PermissionDenied => ClientError::PermissionDenied(message),
            Code::AlreadyExists => ClientError::AlreadyExists(message),
            code => ClientError::Server { code, message },
        }
    }
}
