//! gRPC messages as tonic hands them to the handlers (prost decoding), then the
//! validation each handler does before it touches state: names, versions, chunk
//! ids, node ids, user names, passwords and bearer tokens. Answers the CLI and the
//! controllers' chunk client decode are included.
#![no_main]
use libfuzzer_sys::fuzz_target;
use prost::Message;
use redcloud_controller::{auth, meta, records};
use redcloud_proto::chunk;
use redcloud_proto::controller as pb;
use redcloud_proto::convert;

fn version(v: &str) {
    if !v.is_empty() {
        let _ = v.parse::<redcloud_common::FileId>();
    }
}

fn name(n: &str) {
    if convert::required("name", n).is_ok() {
        let _ = records::check_name(n);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 16 {
        0 => {
            if let Ok(pb::UploadRequest {
                msg: Some(pb::upload_request::Msg::Start(s)),
            }) = pb::UploadRequest::decode(body)
            {
                name(&s.name);
            }
        }
        1 => {
            if let Ok(m) = pb::DownloadRequest::decode(body) {
                name(&m.name);
                version(&m.version);
            }
        }
        2 => {
            if let Ok(m) = pb::VersionsRequest::decode(body) {
                name(&m.name);
            }
        }
        3 => {
            if let Ok(m) = pb::DeleteRequest::decode(body) {
                name(&m.name);
            }
        }
        4 => {
            if let Ok(m) = pb::RegisterRequest::decode(body) {
                let _ = meta::users::check_username(&m.username);
                let _ = auth::check_password(&m.password);
            }
        }
        5 => {
            if let Ok(m) = pb::ForgetNodeRequest::decode(body) {
                let _ = redcloud_common::NodeId::new(m.node_id);
            }
        }
        6 => {
            // The `authorization` metadata value.
            if let Ok(s) = std::str::from_utf8(body) {
                let _ = auth::parse_token(s.strip_prefix("Bearer ").unwrap_or(s));
            }
        }
        7 => {
            if let Ok(m) = chunk::PutChunkRequest::decode(body)
                && let Some(chunk::put_chunk_request::Msg::Header(h)) = m.msg
            {
                let _ = convert::chunk_id("chunk_id", &h.chunk_id);
            }
        }
        8 => {
            if let Ok(m) = chunk::GetChunkRequest::decode(body) {
                let _ = convert::chunk_id("chunk_id", &m.chunk_id);
            }
        }
        9 => {
            if let Ok(m) = chunk::ReplicateFromPeerRequest::decode(body) {
                let _ = convert::chunk_id("chunk_id", &m.chunk_id);
                let _ = convert::required("source_address", &m.source_address);
            }
        }
        10 => {
            if let Ok(m) = chunk::StatRequest::decode(body) {
                for id in m.chunk_ids.iter().take(1000) {
                    let _ = convert::chunk_id("chunk_ids", id);
                }
            }
        }
        11 => {
            if let Ok(m) = chunk::DeleteChunkRequest::decode(body) {
                let _ = convert::chunk_id("chunk_id", &m.chunk_id);
            }
        }
        12 => {
            let _ = pb::DownloadResponse::decode(body);
        }
        13 => {
            let _ = pb::ListResponse::decode(body);
            let _ = pb::ClusterStatusResponse::decode(body);
        }
        14 => {
            if let Ok(m) = chunk::GetChunkResponse::decode(body) {
                let _ = m.data.len();
            }
            let _ = chunk::ListChunksResponse::decode(body);
        }
        _ => {
            let _ = pb::SearchRequest::decode(body);
            let _ = pb::LoginRequest::decode(body);
            let _ = pb::ListRequest::decode(body);
        }
    }
});
