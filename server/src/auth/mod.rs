//! Accounts, sessions and API tokens (issue 7): who may see and change what.
//!
//! - Passwords are argon2id PHC strings (the `argon2` crate's defaults: 19 MiB, 2 passes);
//!   nothing has a default password. The first administrator comes from
//!   `FORGETLAB_ADMIN_USER`/`FORGETLAB_ADMIN_PASSWORD`, `forgetlab admin create`, or a one-time
//!   setup URL the server prints on its first start.
//! - Browser sessions are 256-bit random ids in an HttpOnly, SameSite=Lax cookie, stored as
//!   SHA-256 digests, each with its own CSRF token ([`http`] checks it on every state change).
//! - Personal API tokens (`flk_...`) are stored as SHA-256 digests, shown once, revocable,
//!   and carry their owner's role. Worker tokens are another thing: they only open the worker
//!   protocol ([`crate::queue`]).

pub mod http;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use protocol::auth::{check_password, check_user_name, Account, Identity, NewToken, Role, TokenInfo};
use protocol::Failure;
use sqlx::{Row, SqlitePool};

use crate::db::internal;
use crate::queue::{hash_token, new_token, same_digest};

/// How long a browser session lasts.
pub const SESSION_DAYS: i64 = 14;
/// How long the printed setup URL stays valid.
pub const SETUP_MINUTES: u64 = 60;
/// Failed sign-ins allowed per account name, and per client address, in [`LIMIT_WINDOW`].
const LIMIT_PER_NAME: usize = 5;
const LIMIT_PER_ADDRESS: usize = 20;
const LIMIT_WINDOW: Duration = Duration::from_secs(300);
/// API tokens' `last_used_at` is written at most this often per token.
const LAST_USED_EVERY: Duration = Duration::from_secs(60);
/// The prefix of personal API tokens, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "flk_";

pub struct Auth {
    pub pool: SqlitePool,
    setup: Mutex<Option<(String, Instant)>>,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
    last_used: Mutex<HashMap<i64, Instant>>,
}

fn hash_password(password: &str) -> Result<String, Failure> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(internal)
}

fn password_matches(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A PHC string of a password nobody has, verified against when the name is unknown so a
/// wrong name costs as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&new_token()).unwrap_or_default())
}

fn identity(row: &sqlx::sqlite::SqliteRow, csrf: Option<String>) -> Result<Identity, Failure> {
    let role: String = row.get("role");
    Ok(Identity { user_id: row.get("id"), name: row.get("name"), role: Role::parse(&role).map_err(internal)?, csrf })
}

impl Auth {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool, setup: Mutex::new(None), failures: Mutex::default(), last_used: Mutex::default() }
    }

    pub async fn has_accounts(&self) -> Result<bool, Failure> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.pool).await.map_err(internal)?;
        Ok(n > 0)
    }

    /// Creates an account; a message naming the field when the name or password will not do.
    pub async fn create_user(&self, name: &str, password: &str, role: Role) -> Result<Account, Failure> {
        let mut errors = protocol::FieldErrors::default();
        if let Err(message) = check_user_name(name) {
            errors.add("name", message);
        }
        if let Err(message) = check_password(password) {
            errors.add("password", message);
        }
        if !errors.0.is_empty() {
            return Err(Failure::invalid("the account was not created", errors));
        }
        let password = password.to_owned();
        let phc = tokio::task::spawn_blocking(move || hash_password(&password)).await.map_err(internal)??;
        let row = sqlx::query("INSERT INTO users (name, password_hash, role) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING RETURNING name, role, disabled, created_at")
            .bind(name)
            .bind(phc)
            .bind(role.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(internal)?
            .ok_or_else(|| Failure::conflict(format!("an account named {name:?} exists already")))?;
        Ok(account(&row))
    }

    pub async fn accounts(&self) -> Result<Vec<Account>, Failure> {
        let rows = sqlx::query("SELECT name, role, disabled, created_at FROM users ORDER BY name").fetch_all(&self.pool).await.map_err(internal)?;
        Ok(rows.iter().map(account).collect())
    }

    /// Changes an account's role or disables it; disabling also ends its sessions. The last
    /// enabled administrator cannot be demoted or disabled (nobody could manage accounts).
    pub async fn update_user(&self, name: &str, role: Option<Role>, disabled: Option<bool>) -> Result<Account, Failure> {
        let mut tx = self.pool.begin().await.map_err(internal)?;
        // Write first (SQLite: a transaction that reads first cannot take the write lock later).
        let row = sqlx::query("UPDATE users SET role = COALESCE(?, role), disabled = COALESCE(?, disabled) WHERE name = ? RETURNING id, name, role, disabled, created_at")
            .bind(role.map(Role::as_str))
            .bind(disabled.map(i64::from))
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(internal)?
            .ok_or_else(|| Failure::not_found(format!("no account named {name:?}")))?;
        let admins: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0").fetch_one(&mut *tx).await.map_err(internal)?;
        if admins == 0 {
            return Err(Failure::conflict(format!("{name} is the last enabled administrator; make another account admin first")));
        }
        if disabled == Some(true) {
            let id: i64 = row.get("id");
            sqlx::query("DELETE FROM sessions WHERE user_id = ?").bind(id).execute(&mut *tx).await.map_err(internal)?;
        }
        tx.commit().await.map_err(internal)?;
        Ok(account(&row))
    }

    /// Changes an account's password (its owner gives the old one) and ends its other sessions.
    pub async fn change_password(&self, who: &Identity, old: &str, new: &str) -> Result<(), Failure> {
        check_password(new).map_err(|message| {
            let mut errors = protocol::FieldErrors::default();
            errors.add("new_password", message);
            Failure::invalid("the password was not changed", errors)
        })?;
        if self.verify(&who.name, old).await?.is_none() {
            return Err(Failure::forbidden("the current password is wrong"));
        }
        let new = new.to_owned();
        let phc = tokio::task::spawn_blocking(move || hash_password(&new)).await.map_err(internal)??;
        sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?").bind(phc).bind(who.user_id).execute(&self.pool).await.map_err(internal)?;
        Ok(())
    }

    /// The enabled account with this name and password, or `None`.
    async fn verify(&self, name: &str, password: &str) -> Result<Option<Identity>, Failure> {
        let row = sqlx::query("SELECT id, name, role, password_hash FROM users WHERE name = ? AND disabled = 0").bind(name).fetch_optional(&self.pool).await.map_err(internal)?;
        let phc = row.as_ref().map(|r| r.get::<String, _>("password_hash")).unwrap_or_else(|| decoy_hash().to_owned());
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || password_matches(&password, &phc)).await.map_err(internal)?;
        match row {
            Some(row) if ok => Ok(Some(identity(&row, None)?)),
            _ => Ok(None),
        }
    }

    /// Signs in with a name and password, limited per name and per client address: the
    /// account, or a refusal that says why (and, when limited, how long to wait).
    pub async fn sign_in(&self, name: &str, password: &str, client: Option<IpAddr>) -> Result<Identity, Failure> {
        let keys: Vec<(String, usize)> = std::iter::once((format!("name:{name}"), LIMIT_PER_NAME))
            .chain(client.map(|ip| (format!("ip:{ip}"), LIMIT_PER_ADDRESS)))
            .collect();
        {
            let mut failures = self.failures.lock().expect("failures lock");
            let now = Instant::now();
            failures.retain(|_, times| {
                times.retain(|t| now.duration_since(*t) < LIMIT_WINDOW);
                !times.is_empty()
            });
            for (key, limit) in &keys {
                if let Some(times) = failures.get(key).filter(|times| times.len() >= *limit) {
                    let wait = LIMIT_WINDOW.saturating_sub(now.duration_since(times[0])).as_secs() + 1;
                    return Err(Failure::too_many(format!("too many failed sign-ins; try again in {wait} s")));
                }
            }
        }
        match self.verify(name, password).await? {
            Some(who) => Ok(who),
            None => {
                let mut failures = self.failures.lock().expect("failures lock");
                for (key, _) in keys {
                    failures.entry(key).or_default().push(Instant::now());
                }
                Err(Failure::unauthorized("wrong user name or password (or the account is disabled)"))
            }
        }
    }

    /// A new session for the account: the cookie's value. (Its CSRF token reaches pages
    /// through [`Auth::session`].)
    pub async fn open_session(&self, who: &Identity) -> Result<String, Failure> {
        let (id, csrf) = (new_token(), new_token());
        sqlx::query(&format!("INSERT INTO sessions (id_hash, user_id, csrf, expires_at) VALUES (?, ?, ?, strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '+{SESSION_DAYS} days'))"))
            .bind(hash_token(&id))
            .bind(who.user_id)
            .bind(&csrf)
            .execute(&self.pool)
            .await
            .map_err(internal)?;
        Ok(id)
    }

    /// The account behind a session cookie, if the session is live and the account enabled.
    pub async fn session(&self, cookie: &str) -> Result<Option<Identity>, Failure> {
        let row = sqlx::query(
            "SELECT u.id, u.name, u.role, s.csrf FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id_hash = ? AND u.disabled = 0 AND s.expires_at > strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
        )
        .bind(hash_token(cookie))
        .fetch_optional(&self.pool)
        .await
        .map_err(internal)?;
        row.map(|row| identity(&row, Some(row.get("csrf")))).transpose()
    }

    pub async fn close_session(&self, cookie: &str) -> Result<(), Failure> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = ?").bind(hash_token(cookie)).execute(&self.pool).await.map_err(internal)?;
        Ok(())
    }

    /// Signs the account out everywhere: every session ends.
    pub async fn close_all_sessions(&self, who: &Identity) -> Result<u64, Failure> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = ?").bind(who.user_id).execute(&self.pool).await.map_err(internal)?;
        Ok(done.rows_affected())
    }

    pub async fn create_token(&self, who: &Identity, name: &str) -> Result<NewToken, Failure> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            let mut errors = protocol::FieldErrors::default();
            errors.add("name", "a token needs a name of 1 to 100 characters (say what script uses it)");
            return Err(Failure::invalid("the token was not created", errors));
        }
        let token = format!("{TOKEN_PREFIX}{}", new_token());
        let id: i64 = sqlx::query_scalar("INSERT INTO api_tokens (user_id, name, token_hash) VALUES (?, ?, ?) RETURNING id")
            .bind(who.user_id)
            .bind(name)
            .bind(hash_token(&token))
            .fetch_one(&self.pool)
            .await
            .map_err(internal)?;
        Ok(NewToken { id, name: name.to_owned(), token })
    }

    pub async fn tokens(&self, who: &Identity) -> Result<Vec<TokenInfo>, Failure> {
        let rows = sqlx::query("SELECT id, name, created_at, last_used_at FROM api_tokens WHERE user_id = ? AND revoked_at IS NULL ORDER BY id")
            .bind(who.user_id)
            .fetch_all(&self.pool)
            .await
            .map_err(internal)?;
        Ok(rows.iter().map(|r| TokenInfo { id: r.get("id"), name: r.get("name"), created_at: r.get("created_at"), last_used_at: r.get("last_used_at") }).collect())
    }

    /// Revokes one of the account's tokens (an administrator may revoke anyone's).
    pub async fn revoke_token(&self, who: &Identity, id: i64) -> Result<(), Failure> {
        let done = sqlx::query("UPDATE api_tokens SET revoked_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE id = ? AND revoked_at IS NULL AND (user_id = ? OR ?)")
            .bind(id)
            .bind(who.user_id)
            .bind(who.is_admin())
            .execute(&self.pool)
            .await
            .map_err(internal)?;
        if done.rows_affected() == 0 {
            return Err(Failure::not_found(format!("you have no live token #{id}")));
        }
        Ok(())
    }

    /// The account behind an API token, if the token is live and the account enabled.
    pub async fn token(&self, token: &str) -> Result<Option<Identity>, Failure> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let row = sqlx::query("SELECT u.id, u.name, u.role, t.id AS token_id FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ? AND t.revoked_at IS NULL AND u.disabled = 0")
            .bind(hash_token(token))
            .fetch_optional(&self.pool)
            .await
            .map_err(internal)?;
        let Some(row) = row else { return Ok(None) };
        let token_id: i64 = row.get("token_id");
        let due = {
            let mut last = self.last_used.lock().expect("last-used lock");
            let due = last.get(&token_id).is_none_or(|t| t.elapsed() >= LAST_USED_EVERY);
            if due {
                last.insert(token_id, Instant::now());
            }
            due
        };
        if due {
            sqlx::query("UPDATE api_tokens SET last_used_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE id = ?").bind(token_id).execute(&self.pool).await.map_err(internal)?;
        }
        Ok(Some(identity(&row, None)?))
    }

    /// A one-time setup token for the first administrator, valid [`SETUP_MINUTES`]; only
    /// while no account exists.
    pub fn new_setup_token(&self) -> String {
        let token = new_token();
        *self.setup.lock().expect("setup lock") = Some((hash_token(&token), Instant::now() + Duration::from_secs(SETUP_MINUTES * 60)));
        token
    }

    /// Creates the first administrator with the setup token, which is then spent.
    pub async fn complete_setup(&self, token: &str, name: &str, password: &str) -> Result<Identity, Failure> {
        let valid = {
            let setup = self.setup.lock().expect("setup lock");
            setup.as_ref().is_some_and(|(hash, until)| Instant::now() < *until && same_digest(hash, &hash_token(token)))
        };
        if !valid {
            return Err(Failure::forbidden("this setup link is spent, expired or wrong; restart the server for a new one (it prints it while no account exists)"));
        }
        if self.has_accounts().await? {
            return Err(Failure::conflict("an administrator exists already; sign in instead"));
        }
        self.create_user(name, password, Role::Admin).await?;
        *self.setup.lock().expect("setup lock") = None;
        self.verify(name, password).await?.ok_or_else(|| Failure::internal("the new account could not sign in"))
    }
}

fn account(row: &sqlx::sqlite::SqliteRow) -> Account {
    let role: String = row.get("role");
    Account { name: row.get("name"), role: Role::parse(&role).unwrap_or(Role::Viewer), disabled: row.get::<i64, _>("disabled") != 0, created_at: row.get("created_at") }
}

/// Refuses viewers what only members and administrators may do: launch runs and studies.
pub fn check_may_launch(who: &Identity) -> Result<(), Failure> {
    if who.role.can_launch() {
        return Ok(());
    }
    Err(Failure::forbidden(format!("{} is a viewer: viewers browse but cannot launch; ask an administrator for the member role", who.name)))
}

/// What an account may cancel, retry or extend: a run or a study.
#[derive(Debug, Clone, Copy)]
pub enum Owned {
    Run(i64),
    Study(i64),
}

/// Refuses unless `who` may change `what`: members their own runs and studies, administrators
/// anything, viewers nothing.
pub async fn check_may_change(pool: &SqlitePool, who: &Identity, what: Owned) -> Result<(), Failure> {
    let (sql, noun, id) = match what {
        Owned::Run(id) => ("SELECT owner FROM runs WHERE id = ?", "run", id),
        Owned::Study(id) => ("SELECT owner FROM studies WHERE id = ?", "study", id),
    };
    let owner: Option<String> = sqlx::query_scalar(sql)
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(internal)?
        .ok_or_else(|| Failure::not_found(format!("no {noun} #{id}")))?;
    if who.may_change(owner.as_deref()) {
        return Ok(());
    }
    let whose = owner.map_or_else(|| "nobody (it predates accounts)".to_owned(), |o| o.to_string());
    Err(Failure::forbidden(format!("{noun} #{id} belongs to {whose}; {} may change only their own (administrators may change any)", who.name)))
}
