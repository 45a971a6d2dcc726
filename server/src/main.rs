//! `forgetlab`: the web server. See `forgetlab --help` for its settings.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,tower_http=warn,sqlx=warn".into()))
        .init();
    let config = server::config::Config::parse();
    server::startup::run(config).await
}
