//! Background work as named workers of one shape (garage's `Worker`): each says
//! what it is called, does one unit of work at a time and reports whether it is
//! busy, idle or throttled, and waits for work between units. One [`Supervisor`]
//! runs them all, keeps their status for `cluster status`, survives a unit that
//! fails (the error is kept, the worker goes on), and stops them on shutdown
//! within a deadline.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// A boxed future, as the trait's methods return (the trait is object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a worker reports after a unit of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// More work is waiting: run again at once.
    Busy,
    /// Held back on purpose (a rate limit, a backoff): waits before the next unit.
    Throttled(Duration),
    /// Nothing to do until `wait_for_work` returns.
    Idle,
    /// Finished for good.
    Done,
}

impl WorkerState {
    pub fn name(self) -> &'static str {
        match self {
            WorkerState::Busy => "busy",
            WorkerState::Throttled(_) => "throttled",
            WorkerState::Idle => "idle",
            WorkerState::Done => "done",
        }
    }
}

/// One kind of background work.
pub trait Worker: Send + 'static {
    /// A short stable name (`anti-entropy`, `repair`, ...).
    fn name(&self) -> &'static str;
    /// Does one unit of work.
    fn work(&mut self) -> BoxFuture<'_, Result<WorkerState, String>>;
    /// Waits until there may be work again (a timer, a wake-up).
    fn wait_for_work(&mut self) -> BoxFuture<'_, ()>;
}

/// A worker's status, as `cluster status` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStatus {
    pub name: &'static str,
    pub state: &'static str,
    /// Units of work done.
    pub units: u64,
    /// Units that failed.
    pub errors: u64,
    pub last_error: Option<String>,
    /// How long ago the last error was (ms).
    pub last_error_age_ms: Option<u64>,
    /// How long the current (or last) unit has run (ms).
    pub unit_ms: u64,
}

#[derive(Debug)]
struct Entry {
    state: &'static str,
    units: u64,
    errors: u64,
    last_error: Option<(String, Instant)>,
    unit_started: Option<Instant>,
    last_unit: Duration,
}

/// Runs workers and keeps their status. Cheap to clone.
#[derive(Clone, Default)]
pub struct Supervisor {
    status: Arc<Mutex<BTreeMap<&'static str, Entry>>>,
    handles: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Supervisor {
    pub fn new() -> Self {
        Self::default()
    }

    fn set(&self, name: &'static str, f: impl FnOnce(&mut Entry)) {
        let mut m = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry(name).or_insert(Entry {
            state: "starting",
            units: 0,
            errors: 0,
            last_error: None,
            unit_started: None,
            last_unit: Duration::ZERO,
        });
        f(e);
    }

    /// Starts `worker` on its own task until `shutdown`.
    pub fn spawn(&self, mut worker: impl Worker, shutdown: CancellationToken) {
        let name = worker.name();
        self.set(name, |_| {});
        let me = self.clone();
        let handle = tokio::spawn(async move {
            loop {
                me.set(name, |e| {
                    e.state = "busy";
                    e.unit_started = Some(Instant::now());
                });
                let r = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    r = worker.work() => r,
                };
                let state = match r {
                    Ok(s) => s,
                    Err(err) => {
                        tracing::warn!(worker = name, "{err}");
                        me.set(name, |e| {
                            e.errors += 1;
                            e.last_error = Some((err, Instant::now()));
                        });
                        WorkerState::Idle
                    }
                };
                me.set(name, |e| {
                    e.units += 1;
                    e.state = state.name();
                    if let Some(t) = e.unit_started.take() {
                        e.last_unit = t.elapsed();
                    }
                });
                match state {
                    WorkerState::Busy => tokio::task::yield_now().await,
                    WorkerState::Throttled(d) => tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(d) => {}
                    },
                    WorkerState::Idle => tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = worker.wait_for_work() => {}
                    },
                    WorkerState::Done => break,
                }
            }
            me.set(name, |e| e.state = "stopped");
        });
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }

    /// Every worker's status, by name.
    pub fn status(&self) -> Vec<WorkerStatus> {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, e)| WorkerStatus {
                name,
                state: e.state,
                units: e.units,
                errors: e.errors,
                last_error: e.last_error.as_ref().map(|(s, _)| s.clone()),
                last_error_age_ms: e
                    .last_error
                    .as_ref()
                    .map(|(_, t)| t.elapsed().as_millis() as u64),
                unit_ms: e
                    .unit_started
                    .map(|t| t.elapsed())
                    .unwrap_or(e.last_unit)
                    .as_millis() as u64,
            })
            .collect()
    }

    /// Waits for every worker to stop (after shutdown was cancelled), at most
    /// `deadline`; workers still running then are aborted. Returns the names of
    /// those aborted.
    pub async fn stop(&self, deadline: Duration) -> Vec<&'static str> {
        let handles: Vec<_> =
            std::mem::take(&mut *self.handles.lock().unwrap_or_else(|e| e.into_inner()));
        let end = tokio::time::Instant::now() + deadline;
        for mut h in handles {
            if tokio::time::timeout_at(end, &mut h).await.is_err() {
                h.abort();
            }
        }
        let stuck: Vec<&'static str> = self
            .status()
            .into_iter()
            .filter(|s| s.state != "stopped")
            .map(|s| s.name)
            .collect();
        if !stuck.is_empty() {
            tracing::warn!(?stuck, "workers did not stop within {deadline:?}: aborted");
        }
        stuck
    }
}

/// A worker that runs `unit` every `interval` (and when `wake` is notified, if
/// given). The common shape of the periodic workers.
pub struct Periodic<F> {
    pub name: &'static str,
    pub interval: Duration,
    pub wake: Option<Arc<tokio::sync::Notify>>,
    pub unit: F,
    started: bool,
}

impl<F> Periodic<F> {
    pub fn new(name: &'static str, interval: Duration, unit: F) -> Self {
        Periodic {
            name,
            interval,
            wake: None,
            unit,
            started: false,
        }
    }

    /// Also runs as soon as `wake` is notified.
    pub fn woken_by(mut self, wake: Arc<tokio::sync::Notify>) -> Self {
        self.wake = Some(wake);
        self
    }
}

impl<F, Fut> Worker for Periodic<F>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<WorkerState, String>> + Send + 'static,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn work(&mut self) -> BoxFuture<'_, Result<WorkerState, String>> {
        self.started = true;
        Box::pin((self.unit)())
    }

    fn wait_for_work(&mut self) -> BoxFuture<'_, ()> {
        let interval = self.interval;
        let wake = self.wake.clone();
        Box::pin(async move {
            match wake {
                Some(w) => tokio::select! {
                    _ = w.notified() => {}
                    _ = tokio::time::sleep(interval) => {}
                },
                None => tokio::time::sleep(interval).await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_failing_unit_is_recorded_and_the_worker_goes_on_and_stops_in_time() {
        let sup = Supervisor::new();
        let sd = CancellationToken::new();
        let n = Arc::new(AtomicU32::new(0));
        let m = n.clone();
        let wake = Arc::new(tokio::sync::Notify::new());
        sup.spawn(
            Periodic::new("flaky", Duration::from_secs(3600), move || {
                let k = m.fetch_add(1, Ordering::SeqCst);
                async move {
                    if k == 0 {
                        Err("first unit fails".to_string())
                    } else {
                        Ok(WorkerState::Idle)
                    }
                }
            })
            .woken_by(wake.clone()),
            sd.clone(),
        );
        // The first (failing) unit ran; wake it for a second.
        let deadline = Instant::now() + Duration::from_secs(10);
        while n.load(Ordering::SeqCst) < 1 && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        while sup.status()[0].units < 1 && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        wake.notify_one();
        while n.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        let s = &sup.status()[0];
        assert_eq!(s.name, "flaky");
        assert_eq!(s.errors, 1);
        assert_eq!(s.last_error.as_deref(), Some("first unit fails"));
        sd.cancel();
        assert!(sup.stop(Duration::from_secs(5)).await.is_empty());
        assert_eq!(sup.status()[0].state, "stopped");
    }
}
