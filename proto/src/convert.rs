//! Conversions at the protocol boundary: request fields into domain types.

use tonic::Status;

/// Parses a chunk id field, rejecting anything but 64 hex characters.
pub fn chunk_id(field: &str, value: &str) -> Result<redcloud_common::ChunkId, Status> {
    value
        .parse()
        .map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

/// Rejects an empty required string field.
pub fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.is_empty() {
        Err(Status::invalid_argument(format!("{field} is required")))
    } else {
        Ok(value)
    }
}
