//! The controller's error type, and the one place it becomes a gRPC status.

use redcloud_common::ChunkId;
use tonic::Status;

/// What went wrong, phrased so the caller knows what to do.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The request is malformed: fix it and resend.
    #[error("{0}")]
    InvalidArgument(String),
    /// No such file (or version).
    #[error("{0}")]
    NotFound(String),
    /// No healthy chunkserver is registered: start one, or wait for heartbeats.
    #[error("no chunkserver available: none has sent a heartbeat within the heartbeat timeout")]
    NoChunkservers,
    /// Every chunkserver tried for a chunk was unreachable.
    #[error(
        "no chunkserver available: none of the {tried} tried could store chunk {chunk}: {errors}"
    )]
    NoChunkserverReachable {
        chunk: ChunkId,
        tried: usize,
        errors: String,
    },
    /// Fewer chunkservers than required stored a chunk: retry later.
    #[error("only {got} of the {need} required chunkservers stored chunk {chunk}: {errors}")]
    InsufficientReplicas {
        chunk: ChunkId,
        got: usize,
        need: usize,
        errors: String,
    },
    /// Every copy of a chunk is unreachable or corrupt.
    #[error("chunk {chunk} is unavailable: {tried}")]
    ChunkUnavailable { chunk: ChunkId, tried: String },
    /// Temporarily unavailable (e.g. metadata still replicating): retry shortly.
    #[error("{0}")]
    Unavailable(String),
    /// Refused in the cluster's present state: read the message, then retry (or
    /// override) deliberately.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The name (a user name) is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// No valid credentials: log in (again).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this (another user's private book, or a write
    /// without logging in).
    #[error("{0}")]
    PermissionDenied(String),
    /// The metadata store failed.
    #[error("metadata store error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ControllerError> for Status {
    fn from(e: ControllerError) -> Status {
        let msg = e.to_string();
        let msg = redcloud_common::clip(&msg, redcloud_common::MAX_ERROR_MESSAGE).into_owned();
        match e {
            ControllerError::InvalidArgument(_) => Status::invalid_argument(msg),
            ControllerError::NotFound(_) => Status::not_found(msg),
            ControllerError::NoChunkservers
            | ControllerError::NoChunkserverReachable { .. }
            | ControllerError::InsufficientReplicas { .. } => Status::unavailable(msg),
            ControllerError::ChunkUnavailable { .. } | ControllerError::Unavailable(_) => {
                Status::unavailable(msg)
            }
            ControllerError::FailedPrecondition(_) => Status::failed_precondition(msg),
            ControllerError::AlreadyExists(_) => Status::already_exists(msg),
            ControllerError::Unauthenticated(_) => Status::unauthenticated(msg),
            ControllerError::PermissionDenied(_) => Status::permission_denied(msg),
            ControllerError::Db(_) | ControllerError::Internal(_) => Status::internal(msg),
        }
    }
}

impl ControllerError {
    /// The HTTP status the admin API answers this error with (the counterpart of
    /// the gRPC mapping above).
    pub fn http_status(&self) -> hyper::StatusCode {
        use hyper::StatusCode as S;
        match self {
            ControllerError::InvalidArgument(_) => S::BAD_REQUEST,
            ControllerError::NotFound(_) => S::NOT_FOUND,
            ControllerError::NoChunkservers
            | ControllerError::NoChunkserverReachable { .. }
            | ControllerError::InsufficientReplicas { .. }
            | ControllerError::ChunkUnavailable { .. }
            | ControllerError::Unavailable(_) => S::SERVICE_UNAVAILABLE,
            ControllerError::FailedPrecondition(_) | ControllerError::AlreadyExists(_) => {
                S::CONFLICT
            }
            ControllerError::Unauthenticated(_) => S::UNAUTHORIZED,
            ControllerError::PermissionDenied(_) => S::FORBIDDEN,
            ControllerError::Db(_) | ControllerError::Internal(_) => S::INTERNAL_SERVER_ERROR,
        }
    }
}

pub type Result<T, E = ControllerError> = std::result::Result<T, E>;
