use clap::Parser;
use redcloud_chunkserver::{Config, bind};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // `healthcheck`: for the container HEALTHCHECK (exit 0 if this node answers).
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        let listen = std::env::var("CHUNKSERVER_HTTP_LISTEN")
            .unwrap_or_else(|_| Config::default_http_listen().into());
        return if redcloud_common::http::healthcheck(&listen).await {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        };
    }
    redcloud_common::config::init_logging();
    let config = Config::parse();
    let shutdown = CancellationToken::new();
    redcloud_common::shutdown::on_signal(shutdown.clone());
    let result = async {
        let listeners = bind(&config).await?;
        redcloud_chunkserver::run(config, listeners, shutdown).await
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redcloud-chunkserver: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
