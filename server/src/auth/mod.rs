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

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use protocol::Failure;
use protocol::auth::{Account, Identity, NewToken, Role, TokenInfo, check_password, check_user_name};
use sqlx::{Row, SqlitePool};

use crate::db::internal;
use crate::queue::{hash_token, new_token, same_digest};

/// How long a browser session lasts.
pub const SESSION_DAYS: i64 = 14;
/// A session's `last_seen_at` is written at most this often.
const SEEN_EVERY_SECONDS: i64 = 60;
/// How long the printed setup URL stays valid.
pub const SETUP_MINUTES: u64 = 60;
/// Failed sign-ins allowed per account name, and per client address, in [`LIMIT_WINDOW`].
const LIMIT_PER_NAME: usize = 5;
const LIMIT_PER_ADDRESS: usize = 20;
const LIMIT_WINDOW: Duration = Duration::from_secs(300);
/// Password hashes (argon2id, 19 MiB each) computed at once, per core: beyond them a sign-in
/// waits up to [`HASH_WAIT`], then is answered 503 (issue 19, item 1).
const HASHES_PER_CORE: usize = 2;
const HASH_WAIT: Duration = Duration::from_secs(5);
/// API tokens' `last_used_at` is written at most this often per token.
const LAST_USED_EVERY: Duration = Duration::from_secs(60);
/// The prefix of personal API tokens, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "flk_";

pub struct Auth {
    pub pool: SqlitePool,
    setup: Mutex<Option<(String, Instant)>>,
    /// Sign-in attempts per limiter key ([`Auth::sign_in`]): failed ones, and those in flight.
    attempts: Mutex<HashMap<String, Vec<Instant>>>,
    hashing: tokio::sync::Semaphore,
    last_used: Mutex<HashMap<i64, Instant>>,
    /// Bumped whenever sessions end or tokens are revoked: event streams recheck their
    /// credentials then ([`Auth::signed_out`]).
    sign_outs: tokio::sync::watch::Sender<u64>,
    /// How long an unused session lasts.
    idle: Duration,
    clients: ClientAddress,
}

/// Where a request comes from, for the sign-in limits: the connection's address, or, for a
/// request from a configured reverse proxy, the address that proxy wrote in its header.
#[derive(Debug, Clone)]
pub struct ClientAddress {
    pub trusted_proxies: Vec<IpAddr>,
    /// Lower case, e.g. `x-forwarded-for` (its last entry is read: the one the proxy added).
    pub header: String,
}

impl Default for ClientAddress {
    fn default() -> Self {
        Self { trusted_proxies: Vec::new(), header: "x-forwarded-for".into() }
    }
}

impl ClientAddress {
    pub fn of(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
        if !self.trusted_proxies.contains(&peer) {
            return peer;
        }
        let forwarded = headers.get_all(self.header.as_str()).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).last();
        forwarded.and_then(|text| text.trim().parse().ok()).unwrap_or(peer)
    }
}

/// The limiter's key for a client: an IPv4 address as it is, an IPv6 one by its /64 (what one
/// host is usually given, so it cannot step through its own addresses).
fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let s = v6.segments();
                format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// One sign-in attempt, counted against its keys from before its password is hashed.
struct Attempt {
    keys: Vec<String>,
    at: Instant,
}

/// Sessions, tokens and hashes ended or refused by a password change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordChanged {
    pub sessions_ended: u64,
    pub tokens_revoked: u64,
}

/// Revokes every live API token of account `user_id`; how many.
async fn revoke_all_tokens(tx: &mut sqlx::SqliteConnection, user_id: i64) -> Result<u64, Failure> {
    let done = sqlx::query("UPDATE api_tokens SET revoked_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE user_id = ? AND revoked_at IS NULL")
        .bind(user_id)
        .execute(tx)
        .await
        .map_err(internal)?;
    Ok(done.rows_affected())
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
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            pool,
            setup: Mutex::new(None),
            attempts: Mutex::default(),
            hashing: tokio::sync::Semaphore::new(HASHES_PER_CORE * cores),
            last_used: Mutex::default(),
            sign_outs: tokio::sync::watch::Sender::new(0),
            idle: Duration::from_secs(12 * 3600),
            clients: ClientAddress::default(),
        }
    }

    /// Sessions end after `idle` unused.
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    pub fn with_client_address(mut self, clients: ClientAddress) -> Self {
        self.clients = clients;
        self
    }

    pub fn client_address(&self) -> &ClientAddress {
        &self.clients
    }

    /// Runs argon2 work (hashing or checking a password) on a blocking thread, under a permit
    /// of the bound on concurrent hashes, waiting up to [`HASH_WAIT`] for one.
    async fn argon2<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, Failure> {
        let _permit = match tokio::time::timeout(HASH_WAIT, self.hashing.acquire()).await {
            Ok(Ok(permit)) => permit,
            _ => return Err(Failure::new(503, "the server is busy checking other passwords; try again in a few seconds")),
        };
        tokio::task::spawn_blocking(work).await.map_err(internal)
    }

    async fn hash(&self, password: &str) -> Result<String, Failure> {
        let password = password.to_owned();
        self.argon2(move || hash_password(&password)).await?
    }

    fn signed_out_now(&self) {
        self.sign_outs.send_modify(|n| *n += 1);
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
        let phc = self.hash(password).await?;
        let row = sqlx::query(
            "INSERT INTO users (name, password_hash, role) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING RETURNING name, role, disabled, created_at",
        )
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
    /// Changes an account's role or disabled flag. `who`, the administrator asking (none for
    /// the shell's `forgetlab admin`), cannot change their own: another administrator can, so
    /// nobody locks themselves out by a slip.
    pub async fn update_user(&self, who: Option<&Identity>, name: &str, role: Option<Role>, disabled: Option<bool>) -> Result<Account, Failure> {
        if who.is_some_and(|who| who.name == name) && (role.is_some() || disabled.is_some()) {
            return Err(Failure::conflict(format!("{name} is your own account: another administrator can change its role or disable it")));
        }
        let mut tx = self.pool.begin().await.map_err(internal)?;
        // Write first (SQLite: a transaction that reads first cannot take the write lock later).
        let row = sqlx::query(
            "UPDATE users SET role = COALESCE(?, role), disabled = COALESCE(?, disabled) WHERE name = ? RETURNING id, name, role, disabled, created_at",
        )
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
        if disabled == Some(true) {
            self.signed_out_now();
        }
        Ok(account(&row))
    }

    /// An administrator `who` (none for the shell) sets a new password for another account (a
    /// member who lost theirs): every session of that account ends; its API tokens are
    /// revoked when asked. One's own password is changed on the account page, with the
    /// current one.
    pub async fn reset_password(&self, who: Option<&Identity>, name: &str, password: &str, revoke_tokens: bool) -> Result<PasswordChanged, Failure> {
        if who.is_some_and(|who| who.name == name) {
            return Err(Failure::conflict("change your own password on your account page (/account), with the current one"));
        }
        check_password(password).map_err(|message| {
            let mut errors = protocol::FieldErrors::default();
            errors.add("password", message);
            Failure::invalid("the password was not reset", errors)
        })?;
        let phc = self.hash(password).await?;
        let mut tx = self.pool.begin().await.map_err(internal)?;
        let id: i64 = sqlx::query_scalar("UPDATE users SET password_hash = ? WHERE name = ? RETURNING id")
            .bind(phc)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(internal)?
            .ok_or_else(|| Failure::not_found(format!("no account named {name:?}")))?;
        let sessions = sqlx::query("DELETE FROM sessions WHERE user_id = ?").bind(id).execute(&mut *tx).await.map_err(internal)?;
        let tokens = if revoke_tokens { revoke_all_tokens(&mut tx, id).await? } else { 0 };
        tx.commit().await.map_err(internal)?;
        self.signed_out_now();
        Ok(PasswordChanged { sessions_ended: sessions.rows_affected(), tokens_revoked: tokens })
    }

    /// Changes an account's password: its owner gives the current one, checked under the
    /// sign-in limits. Every other session of the account ends (the one making the change
    /// stays: `who.csrf` names it), and its API tokens are revoked when asked.
    pub async fn change_password(&self, who: &Identity, old: &str, new: &str, revoke_tokens: bool) -> Result<PasswordChanged, Failure> {
        check_password(new).map_err(|message| {
            let mut errors = protocol::FieldErrors::default();
            errors.add("new_password", message);
            Failure::invalid("the password was not changed", errors)
        })?;
        match self.sign_in(&who.name, old, None).await {
            Ok(_) => {}
            Err(failure) if failure.status == 401 => return Err(Failure::forbidden("the current password is wrong")),
            Err(failure) => return Err(failure),
        }
        let phc = self.hash(new).await?;
        let mut tx = self.pool.begin().await.map_err(internal)?;
        sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?").bind(phc).bind(who.user_id).execute(&mut *tx).await.map_err(internal)?;
        let sessions = sqlx::query("DELETE FROM sessions WHERE user_id = ? AND csrf IS NOT ?")
            .bind(who.user_id)
            .bind(&who.csrf)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        let tokens = if revoke_tokens { revoke_all_tokens(&mut tx, who.user_id).await? } else { 0 };
        tx.commit().await.map_err(internal)?;
        self.signed_out_now();
        Ok(PasswordChanged { sessions_ended: sessions.rows_affected(), tokens_revoked: tokens })
    }

    /// The enabled account with this name and password, or `None`.
    async fn verify(&self, name: &str, password: &str) -> Result<Option<Identity>, Failure> {
        let row = sqlx::query("SELECT id, name, role, password_hash FROM users WHERE name = ? AND disabled = 0")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(internal)?;
        let phc = row.as_ref().map(|r| r.get::<String, _>("password_hash"));
        let password = password.to_owned();
        // The decoy is made (once) on the blocking thread too, under the same bound.
        let ok = self.argon2(move || password_matches(&password, phc.as_deref().unwrap_or_else(|| decoy_hash()))).await?;
        match row {
            Some(row) if ok => Ok(Some(identity(&row, None)?)),
            _ => Ok(None),
        }
    }

    /// Counts an attempt against its keys before its password is checked, so a burst of
    /// parallel guesses meets the limit as the guesses start, not as they finish; refuses it
    /// when a key has had its limit of failed and unfinished attempts in the window.
    fn start_attempt(&self, keys: &[(String, usize)]) -> Result<Attempt, Failure> {
        let mut attempts = self.attempts.lock().expect("attempts lock");
        let now = Instant::now();
        attempts.retain(|_, times| {
            times.retain(|t| now.duration_since(*t) < LIMIT_WINDOW);
            !times.is_empty()
        });
        for (key, limit) in keys {
            if let Some(times) = attempts.get(key).filter(|times| times.len() >= *limit) {
                let wait = LIMIT_WINDOW.saturating_sub(now.duration_since(times[0])).as_secs() + 1;
                return Err(Failure::too_many(format!("too many failed sign-ins; try again in {wait} s")));
            }
        }
        for (key, _) in keys {
            attempts.entry(key.clone()).or_default().push(now);
        }
        Ok(Attempt { keys: keys.iter().map(|(key, _)| key.clone()).collect(), at: now })
    }

    /// Takes back an attempt that did not fail: it signed in, or no password was checked.
    fn forgive(&self, attempt: Attempt) {
        let mut attempts = self.attempts.lock().expect("attempts lock");
        for key in attempt.keys {
            if let Some(times) = attempts.get_mut(&key) {
                if let Some(at) = times.iter().position(|t| *t == attempt.at) {
                    times.remove(at);
                }
            }
        }
    }

    /// Signs in with a name and password, limited per name and per client address (IPv6 by
    /// its /64): the account, or a refusal that says why (and, when limited, how long to
    /// wait). A name that no account could have is refused before it reaches the limiter.
    pub async fn sign_in(&self, name: &str, password: &str, client: Option<IpAddr>) -> Result<Identity, Failure> {
        if check_user_name(name).is_err() {
            return Err(Failure::unauthorized("wrong user name or password (or the account is disabled)"));
        }
        let keys: Vec<(String, usize)> =
            std::iter::once((format!("name:{name}"), LIMIT_PER_NAME)).chain(client.map(|ip| (address_key(ip), LIMIT_PER_ADDRESS))).collect();
        let attempt = self.start_attempt(&keys)?;
        match self.verify(name, password).await {
            Ok(Some(who)) => {
                self.forgive(attempt);
                Ok(who)
            }
            Ok(None) => Err(Failure::unauthorized("wrong user name or password (or the account is disabled)")),
            Err(failure) => {
                self.forgive(attempt);
                Err(failure)
            }
        }
    }

    /// A new session for the account: the cookie's value. (Its CSRF token reaches pages
    /// through [`Auth::session`].)
    pub async fn open_session(&self, who: &Identity) -> Result<String, Failure> {
        let (id, csrf) = (new_token(), new_token());
        sqlx::query(&format!("INSERT INTO sessions (id_hash, user_id, csrf, expires_at, last_seen_at) VALUES (?, ?, ?, strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '+{SESSION_DAYS} days'), strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))"))
            .bind(hash_token(&id))
            .bind(who.user_id)
            .bind(&csrf)
            .execute(&self.pool)
            .await
            .map_err(internal)?;
        Ok(id)
    }

    /// The account behind a session cookie, if the session is live (not past its life, used
    /// within the idle time) and the account enabled. Marks the session used.
    pub async fn session(&self, cookie: &str) -> Result<Option<Identity>, Failure> {
        self.live_session(cookie, true).await
    }

    /// [`Auth::session`]; `touch`: whether this counts as using the session. A request does;
    /// an event stream rechecking its session does not, or an open tab would keep a session
    /// from ever going idle.
    async fn live_session(&self, cookie: &str, touch: bool) -> Result<Option<Identity>, Failure> {
        let idle = self.idle.as_secs() as i64;
        let row = sqlx::query(
            "SELECT u.id, u.name, u.role, s.csrf,
                    s.last_seen_at < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?) AS stale
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id_hash = ? AND u.disabled = 0 AND s.expires_at > strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
               AND s.last_seen_at > strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?)",
        )
        .bind(format!("-{SEEN_EVERY_SECONDS} seconds"))
        .bind(hash_token(cookie))
        .bind(format!("-{idle} seconds"))
        .fetch_optional(&self.pool)
        .await
        .map_err(internal)?;
        let Some(row) = row else { return Ok(None) };
        if touch && row.get::<bool, _>("stale") {
            sqlx::query("UPDATE sessions SET last_seen_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE id_hash = ?")
                .bind(hash_token(cookie))
                .execute(&self.pool)
                .await
                .map_err(internal)?;
        }
        identity(&row, Some(row.get("csrf"))).map(Some)
    }

    /// Deletes the sessions past their life or their idle time; how many.
    pub async fn purge_sessions(&self) -> Result<u64, Failure> {
        let done = sqlx::query(
            "DELETE FROM sessions WHERE expires_at <= strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
                OR last_seen_at IS NULL OR last_seen_at <= strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?)",
        )
        .bind(format!("-{} seconds", self.idle.as_secs()))
        .execute(&self.pool)
        .await
        .map_err(internal)?;
        Ok(done.rows_affected())
    }

    pub async fn close_session(&self, cookie: &str) -> Result<(), Failure> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = ?").bind(hash_token(cookie)).execute(&self.pool).await.map_err(internal)?;
        self.signed_out_now();
        Ok(())
    }

    /// Signs the account out everywhere: every session ends.
    pub async fn close_all_sessions(&self, who: &Identity) -> Result<u64, Failure> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = ?").bind(who.user_id).execute(&self.pool).await.map_err(internal)?;
        self.signed_out_now();
        Ok(done.rows_affected())
    }

    /// Resolves once `credential` no longer signs anyone in (signed out, expired, idle,
    /// revoked, account disabled): checked once subscribed (so a sign-out just before is not
    /// missed), then at every sign-out and every minute. Event streams end with it.
    pub async fn signed_out(&self, credential: Credential) {
        let mut changes = self.sign_outs.subscribe();
        loop {
            let live = match &credential {
                Credential::Session(cookie) => self.live_session(cookie, false).await,
                Credential::Token(token) => self.token(token).await,
            };
            if matches!(live, Ok(None)) {
                return;
            }
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
        }
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
        Ok(rows
            .iter()
            .map(|r| TokenInfo { id: r.get("id"), name: r.get("name"), created_at: r.get("created_at"), last_used_at: r.get("last_used_at") })
            .collect())
    }

    /// Revokes one of the account's tokens (an administrator may revoke anyone's).
    pub async fn revoke_token(&self, who: &Identity, id: i64) -> Result<(), Failure> {
        let done =
            sqlx::query("UPDATE api_tokens SET revoked_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE id = ? AND revoked_at IS NULL AND (user_id = ? OR ?)")
                .bind(id)
                .bind(who.user_id)
                .bind(who.is_admin())
                .execute(&self.pool)
                .await
                .map_err(internal)?;
        if done.rows_affected() == 0 {
            return Err(Failure::not_found(format!("you have no live token #{id}")));
        }
        self.signed_out_now();
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
            sqlx::query("UPDATE api_tokens SET last_used_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE id = ?")
                .bind(token_id)
                .execute(&self.pool)
                .await
                .map_err(internal)?;
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
            return Err(Failure::forbidden(
                "this setup link is spent, expired or wrong; restart the server for a new one (it prints it while no account exists)",
            ));
        }
        if self.has_accounts().await? {
            return Err(Failure::conflict("an administrator exists already; sign in instead"));
        }
        self.create_user(name, password, Role::Admin).await?;
        *self.setup.lock().expect("setup lock") = None;
        self.verify(name, password).await?.ok_or_else(|| Failure::internal("the new account could not sign in"))
    }
}

/// What signed a request in: the middleware puts it beside the [`Identity`], for what must
/// notice the credential ending (event streams).
#[derive(Debug, Clone)]
pub enum Credential {
    Session(String),
    Token(String),
}

fn account(row: &sqlx::sqlite::SqliteRow) -> Account {
    let role: String = row.get("role");
    Account {
        name: row.get("name"),
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        disabled: row.get::<i64, _>("disabled") != 0,
        created_at: row.get("created_at"),
    }
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
    let owner: Option<String> =
        sqlx::query_scalar(sql).bind(id).fetch_optional(pool).await.map_err(internal)?.ok_or_else(|| Failure::not_found(format!("no {noun} #{id}")))?;
    if who.may_change(owner.as_deref()) {
        return Ok(());
    }
    let whose = owner.map_or_else(|| "nobody (it predates accounts)".to_owned(), |o| o.to_string());
    Err(Failure::forbidden(format!("{noun} #{id} belongs to {whose}; {} may change only their own (administrators may change any)", who.name)))
}
