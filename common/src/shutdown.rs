//! Turning SIGTERM / Ctrl-C into a cancelled shutdown token.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on SIGTERM or SIGINT. The servers then stop accepting, drain
/// in-flight requests and return.
pub fn on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("cannot listen for SIGTERM: {e}");
                        let _ = ctrl_c.await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown signal received; draining");
        token.cancel();
    });
}

/// The whole `main` of a node binary, shared by controller and chunkserver:
/// `<binary> healthcheck` asks this host's node on `http_listen_env` (or
/// `default_http_listen`) for `/health` and exits 0 if it answers (the container
/// HEALTHCHECK); otherwise logging is set up, SIGTERM/SIGINT wired to a shutdown
/// token, and `run` driven to the end. A startup error is printed as
/// `<name>: <error>` with exit code 1.
pub async fn node_main<F, Fut, E>(
    name: &str,
    http_listen_env: &str,
    default_http_listen: &str,
    run: F,
) -> std::process::ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    use std::process::ExitCode;
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        let listen = std::env::var(http_listen_env).unwrap_or_else(|_| default_http_listen.into());
        return if crate::http::healthcheck(&listen).await {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    crate::metrics::process_start_unix_s();
    if let Err(e) = crate::config::init_logging() {
        eprintln!("{name}: {e}");
        return ExitCode::FAILURE;
    }
    let shutdown = CancellationToken::new();
    on_signal(shutdown.clone());
    match run(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
