//! `forgetlab`: the web server. See `forgetlab --help` for its settings, and
//! `forgetlab admin --help` for managing accounts from the shell.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "forgetlab",
    version,
    about = "forgetlab: study what neural networks forget while they are fine-tuned.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: server::config::Config,
}

#[derive(Subcommand)]
enum Command {
    /// Manage accounts in the database of FORGETLAB_DATA_DIR (the server may be running).
    Admin {
        #[command(subcommand)]
        action: server::admin::Action,
        /// Folder holding the SQLite database.
        #[arg(long, env = "FORGETLAB_DATA_DIR", default_value = "data")]
        data_dir: std::path::PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,tower_http=warn,sqlx=warn".into()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Admin { action, data_dir }) => server::admin::run(action, &data_dir).await,
        None => server::startup::run(cli.config).await,
    }
}
