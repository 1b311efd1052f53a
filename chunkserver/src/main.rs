use clap::Parser;
use redcloud_chunkserver::{Config, bind};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> std::process::ExitCode {
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
