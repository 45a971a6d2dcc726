//! `forgetlab admin ...`: accounts managed from the shell, for scripts and for a lab that
//! prefers not to open the setup URL.

use std::io::BufRead;
use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use protocol::auth::Role;

use crate::auth::Auth;

#[derive(Subcommand)]
pub enum Action {
    /// Creates an account. The password comes from FORGETLAB_ADMIN_PASSWORD, or the first line
    /// of standard input.
    Create {
        /// The account's name.
        name: String,
        /// admin, member or viewer.
        #[arg(long, default_value = "admin", value_parser = |s: &str| Role::parse(s))]
        role: Role,
    },
    /// Lists the accounts.
    List,
    /// Changes an account's role.
    Role {
        name: String,
        #[arg(value_parser = |s: &str| Role::parse(s))]
        role: Role,
    },
    /// Sets a new password for an account and ends its sessions. The password comes from
    /// FORGETLAB_ADMIN_PASSWORD, or the first line of standard input.
    Password {
        name: String,
        /// Also revoke the account's API tokens.
        #[arg(long)]
        revoke_tokens: bool,
    },
    /// Disables an account and ends its sessions (its tokens stop working).
    Disable { name: String },
    /// Enables a disabled account.
    Enable { name: String },
    /// Copies the database (one consistent snapshot, while the server serves and workers
    /// upload) and the uploaded weights into the new folder PATH, with a manifest.
    Backup { path: std::path::PathBuf },
    /// Puts a backup made by `admin backup` in place of this data directory's database and
    /// weights. Refuses while a server runs on the data directory; the database it replaces
    /// is kept beside it as `forgetlab.db.before-restore-...`.
    Restore { path: std::path::PathBuf },
}

/// A password for `name`: FORGETLAB_ADMIN_PASSWORD, else the first line of standard input.
fn read_password(name: &str) -> anyhow::Result<String> {
    match std::env::var("FORGETLAB_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => Ok(p),
        _ => {
            eprintln!("password for {name} (one line on standard input; or set FORGETLAB_ADMIN_PASSWORD):");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).context("reading the password")?;
            Ok(line.trim_end_matches(['\n', '\r']).to_owned())
        }
    }
}

/// A refusal as an error for the command line: the message, then each field's.
pub(crate) fn failed(f: protocol::Failure) -> anyhow::Error {
    anyhow::anyhow!("{}{}", f.body.message, f.body.errors.0.iter().map(|(k, v)| format!("; {k}: {v}")).collect::<String>())
}

pub async fn run(action: Action, data_dir: &Path) -> anyhow::Result<()> {
    if let Action::Restore { path } = &action {
        let (manifest, kept) = crate::backup::restore(path, data_dir).await?;
        println!(
            "restored {} ({} runs, {} epochs, {} weights file(s), schema {}) into {}",
            path.display(),
            manifest.runs,
            manifest.epochs,
            manifest.weights.len(),
            manifest.schema_version,
            data_dir.display()
        );
        if let Some(kept) = kept {
            println!("the database it replaced is kept as {}", kept.display());
        }
        return Ok(());
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let pool = crate::db::connect(&data_dir.join("forgetlab.db")).await?;
    let auth = Auth::new(pool);
    match action {
        Action::Create { name, role } => {
            let account = auth.create_user(&name, &read_password(&name)?, role).await.map_err(failed)?;
            println!("created {} ({})", account.name, account.role.as_str());
        }
        Action::Password { name, revoke_tokens } => {
            let done = auth.reset_password(None, &name, &read_password(&name)?, revoke_tokens).await.map_err(failed)?;
            println!("{name}'s password was reset; {} session(s) ended, {} API token(s) revoked", done.sessions_ended, done.tokens_revoked);
        }
        Action::List => {
            for a in auth.accounts().await.map_err(failed)? {
                println!("{}\t{}\t{}\t{}", a.name, a.role.as_str(), if a.disabled { "disabled" } else { "enabled" }, a.created_at);
            }
        }
        Action::Role { name, role } => {
            let a = auth.update_user(None, &name, Some(role), None).await.map_err(failed)?;
            println!("{} is now {}", a.name, a.role.as_str());
        }
        Action::Disable { name } => {
            auth.update_user(None, &name, None, Some(true)).await.map_err(failed)?;
            println!("{name} disabled");
        }
        Action::Enable { name } => {
            auth.update_user(None, &name, None, Some(false)).await.map_err(failed)?;
            println!("{name} enabled");
        }
        Action::Backup { path } => {
            let manifest = crate::backup::backup(&auth.pool, data_dir, &path).await?;
            println!(
                "backed up {} runs, {} epochs and {} weights file(s) into {} (integrity check: ok)",
                manifest.runs,
                manifest.epochs,
                manifest.weights.len(),
                path.display()
            );
        }
        Action::Restore { .. } => unreachable!("handled before the database is opened"),
    }
    Ok(())
}
