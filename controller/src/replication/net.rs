//! The transport between controllers, with a fault filter tests use to cut, delay,
//! drop or duplicate traffic to chosen peers. Without rules it is a plain HTTP call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use redcloud_common::http::{HttpClient, HttpError};
use redcloud_common::metrics::Counter;

/// What happens to messages sent to one destination.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Every message fails at once, as if the network were partitioned.
    Cut,
    /// Every message waits this long first (reorders messages sent concurrently).
    Delay(Duration),
    /// Each message is lost with this probability (0.0–1.0).
    Drop(f64),
    /// Every message is delivered twice.
    Duplicate,
}

/// Fault rules by destination HTTP address. `std` mutex: lookups only.
#[derive(Debug, Default)]
pub struct NetFilter {
    rules: Mutex<HashMap<String, Fault>>,
}

impl NetFilter {
    pub fn set(&self, dest_http: &str, fault: Fault) {
        self.lock().insert(dest_http.to_string(), fault);
    }

    pub fn clear(&self, dest_http: &str) {
        self.lock().remove(dest_http);
    }

    pub fn clear_all(&self) {
        self.lock().clear();
    }

    /// Whether messages to `dest` are cut.
    pub fn is_cut(&self, dest: &str) -> bool {
        matches!(self.get(dest), Some(Fault::Cut))
    }

    fn get(&self, dest: &str) -> Option<Fault> {
        self.lock().get(dest).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Fault>> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sends messages to peers and counts the bytes.
pub struct PeerNet {
    client: HttpClient,
    pub filter: NetFilter,
    pub bytes_sent: Counter,
    pub bytes_received: Counter,
}

impl PeerNet {
    /// `connect`: how long a connect may take; `request`: a whole call.
    pub fn new(connect: Duration, request: Duration, secret: Option<String>) -> Self {
        PeerNet {
            client: HttpClient::with_timeouts(connect, request, secret),
            filter: NetFilter::default(),
            bytes_sent: Counter::default(),
            bytes_received: Counter::default(),
        }
    }

    /// POSTs `body` to `http://{dest}{path}` and returns the answer's body.
    pub async fn post(&self, dest: &str, path: &str, body: Bytes) -> Result<Bytes, HttpError> {
        let mut copies = 1;
        match self.filter.get(dest) {
            Some(Fault::Cut) => {
                return Err(HttpError::Unreachable {
                    url: format!("http://{dest}{path}"),
                    reason: "link cut by the test network filter".into(),
                });
            }
            Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
            Some(Fault::Drop(p)) if rand::random::<f64>() < p => {
                return Err(HttpError::Unreachable {
                    url: format!("http://{dest}{path}"),
                    reason: "message dropped by the test network filter".into(),
                });
            }
            Some(Fault::Duplicate) => copies = 2,
            _ => {}
        }
        let mut last = None;
        for _ in 0..copies {
            self.bytes_sent.add(body.len() as u64);
            let r = self.client.post_bytes(dest, path, body.clone()).await;
            if let Ok(b) = &r {
                self.bytes_received.add(b.len() as u64);
            }
            last = Some(r);
        }
        last.unwrap_or_else(|| {
            Err(HttpError::Unreachable {
                url: dest.to_string(),
                reason: "nothing sent".into(),
            })
        })
    }

    /// GETs `http://{dest}{path}` (through the same filter).
    pub async fn get(&self, dest: &str, path: &str) -> Result<Bytes, HttpError> {
        if matches!(self.filter.get(dest), Some(Fault::Cut)) {
            return Err(HttpError::Unreachable {
                url: format!("http://{dest}{path}"),
                reason: "link cut by the test network filter".into(),
            });
        }
        self.client.get(dest, path).await
    }
}
