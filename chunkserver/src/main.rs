use clap::Parser;
use redcloud_chunkserver::{Config, bind};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    redcloud_common::shutdown::node_main(
        "redcloud-chunkserver",
        "CHUNKSERVER_HTTP_LISTEN",
        Config::default_http_listen(),
        |shutdown| async move {
            let config = Config::parse();
            let listeners = bind(&config).await?;
            redcloud_chunkserver::run(config, listeners, shutdown).await
        },
    )
    .await
}
