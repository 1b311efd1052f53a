use clap::Parser;
use redcloud_controller::{Config, bind};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    redcloud_common::shutdown::node_main(
        "redcloud-controller",
        "CONTROLLER_HTTP_LISTEN",
        Config::default_http_listen(),
        |shutdown| async move {
            let config = Config::parse();
            let listeners = bind(&config).await?;
            redcloud_controller::run(config, listeners, shutdown).await
        },
    )
    .await
}
