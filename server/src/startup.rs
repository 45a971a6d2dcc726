//! Wiring: database, services, routes, workers, and serving until asked to stop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use app::backend::SharedBackend;
use app::{App, shell};
use axum::Router;
use axum::http::{HeaderValue, header};
use leptos::prelude::{LeptosOptions, provide_context, use_context};
use leptos_axum::{LeptosRoutes, generate_route_list};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::Auth;
use crate::auth::http::{authenticate, login, logout, setup};
use crate::config::{Config, ExecutorKind};
use crate::executor::LocalExecutor;
use crate::executor::slurm::{SlurmExecutor, SlurmSettings};
use crate::progress::Hub;
use crate::queue::{Queue, new_token};
use crate::registry::Registry;
use crate::routes::{AppState, api_router};
use crate::service::Service;

/// The largest body a page takes (forms, server functions).
const PAGE_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The shortest worker token a configuration may set: 32 bytes (a random one is 64 hex digits).
pub const MIN_WORKER_TOKEN: usize = 32;

pub async fn run(config: Config) -> anyhow::Result<()> {
    if let Some(token) = &config.worker_token {
        if token.len() < MIN_WORKER_TOKEN {
            anyhow::bail!(
                "FORGETLAB_WORKER_TOKEN has {} bytes; a worker token needs at least {MIN_WORKER_TOKEN} (make one with `openssl rand -hex 32`), or leave it unset for a random one per start",
                token.len()
            );
        }
    }
    private_files(&config.data_dir)?;
    return_large_allocations();
    // Held until the process ends: one server per data directory, and no restore under it.
    let _data_lock = crate::backup::lock_data_dir(&config.data_dir)?;
    std::fs::create_dir_all(config.data_dir.join("datasets")).with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let pool = crate::db::connect(&config.database_path()).await?;
    tracing::info!("database {}", config.database_path().display());

    let hub = Hub::default();
    let registry = Arc::new(Registry::new(pool.clone(), config.all_data_roots()));
    registry.register_default().await;
    let worker_token = config.worker_token.clone().unwrap_or_else(new_token);
    let limits = crate::service::MemberLimits { active_runs: config.member_max_active_runs, max_priority: config.member_max_priority };
    let disk = Arc::new(crate::disk::Disk::new(config.data_dir.clone(), config.disk_warn_mb, config.disk_min_free_mb));
    let service = Arc::new(Service { limits, disk: disk.clone(), ..Service::new(pool.clone(), registry.clone(), hub.clone()) });
    let queue = Arc::new(Queue::new(pool.clone(), hub, registry, &worker_token, config.lease_seconds).with_record_precision(config.record_precision));

    let listener = TcpListener::bind(config.addr).await.with_context(|| format!("binding {}", config.addr))?;
    let addr = listener.local_addr()?;
    let host = if addr.ip().is_unspecified() { "127.0.0.1".to_owned() } else { addr.ip().to_string() };
    let server_url = format!("http://{host}:{}", addr.port());
    let data_dir = std::path::absolute(&config.data_dir).context("resolving the data directory")?;
    let worker_bin = config.worker_bin();
    // Checked before serving: a bad setting stops the start with its name.
    let slurm = match config.executor {
        ExecutorKind::Slurm => {
            let cluster_worker_bin = std::path::absolute(&worker_bin).context("resolving the worker binary's path")?;
            let settings = SlurmSettings::from_config(&config, &server_url, cluster_worker_bin, data_dir.clone());
            Some(settings.map_err(|message| anyhow::anyhow!("bad Slurm setting: {message}"))?)
        }
        ExecutorKind::Local => None,
    };
    let site_root = config.site_root();
    if !site_root.join("pkg").is_dir() {
        tracing::warn!("no browser bundle in {}: pages will not hydrate (run `cargo leptos build --frontend-only`)", site_root.display());
    }
    let leptos_options =
        LeptosOptions::builder().output_name("forgetlab").site_root(site_root.display().to_string()).site_pkg_dir("pkg").site_addr(addr).build();
    let clients = crate::auth::ClientAddress { trusted_proxies: config.trusted_proxies.clone(), header: config.client_ip_header.to_ascii_lowercase() };
    let auth =
        Arc::new(Auth::new(pool.clone()).with_idle_timeout(Duration::from_secs(config.session_idle_hours.saturating_mul(3600))).with_client_address(clients));
    bootstrap_accounts(&auth, &server_url).await?;
    let settings = Arc::new(crate::routes::Settings {
        data_dir: data_dir.clone(),
        max_upload_bytes: config.max_upload_mb.saturating_mul(1024 * 1024),
        worker_body_timeout: Duration::from_secs(config.worker_body_seconds),
    });
    let state = AppState { leptos_options: leptos_options.clone(), service: service.clone(), queue: queue.clone(), auth: auth.clone(), settings };

    let backend: SharedBackend = Arc::new(crate::service::Site { service, queue: queue.clone(), auth: auth.clone() });
    let routes = generate_route_list(App);
    // Pages and server functions see the signed-in account as context.
    let page_context = move || {
        provide_context(backend.clone());
        let parts = use_context::<axum::http::request::Parts>();
        if let Some(who) = parts.as_ref().and_then(|parts| parts.extensions.get::<protocol::auth::Identity>().cloned()) {
            provide_context(who);
        }
        // The nonce leptos gives this page's scripts, for `page_policy` to put in its CSP.
        if let (Some(slot), Some(nonce)) = (parts.as_ref().and_then(|parts| parts.extensions.get::<PageNonce>()), leptos::nonce::use_nonce()) {
            let _ = slot.0.set(nonce.to_string());
        }
    };
    let app = Router::new()
        .leptos_routes_with_context(&state, routes, page_context, {
            let options = leptos_options.clone();
            move || shell(options.clone())
        })
        .route("/login", axum::routing::post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/setup", axum::routing::post(setup))
        .route("/healthz", axum::routing::get(crate::routes::ops::healthz))
        .route("/metrics", axum::routing::get(crate::routes::ops::metrics))
        .nest_service("/pkg", crate::assets::router(site_root.join("pkg")))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        // Pages, forms and server functions; the API's routes set their own limits.
        .layer(RequestBodyLimitLayer::new(PAGE_BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, crate::routes::REQUEST_TIMEOUT))
        .layer(axum::middleware::from_fn(page_policy))
        .nest("/api/v1", api_router(&state))
        .layer(axum::middleware::from_fn_with_state(auth.clone(), authenticate))
        // brotli (browsers ask for it over HTTPS) or gzip for pages and JSON; the bundle under
        // /pkg has its own compressed copies. Not for the event stream (tower-http's default
        // predicate leaves text/event-stream, images and small bodies alone).
        .layer(CompressionLayer::new())
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        // Pages set their own policy with the nonce of their inline scripts (`app::csp`);
        // everything else (JSON, files) gets the strictest.
        .layer(SetResponseHeaderLayer::if_not_present(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'")))
        .layer(TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn(crate::routes::ops::timed))
        .with_state(state);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    spawn_lease_reaper(queue.clone(), shutdown_rx.clone());
    // Runs whose end-of-run analysis a stopped server left unfinished.
    if let Err(failure) = queue.resume_analyses().await {
        tracing::error!("looking for unfinished analyses failed: {}", failure.body.message);
    }
    spawn_session_purger(auth.clone(), shutdown_rx.clone());
    // The data volume: a warning in the log when it crosses a threshold (the jobs page and
    // /healthz read it when asked), and the checkpoints of runs that failed long ago removed.
    spawn_periodic(Duration::from_secs(60), true, shutdown_rx.clone(), move || {
        let disk = disk.clone();
        async move { disk.log(&disk.now()) }
    });
    let checkpoints_dir = config.slurm_data_dir.clone().filter(|_| config.executor == ExecutorKind::Slurm).unwrap_or_else(|| data_dir.clone());
    let (days, checkpoint_pool) = (config.failed_checkpoint_days, pool.clone());
    spawn_periodic(Duration::from_secs(3600), true, shutdown_rx.clone(), move || {
        let (pool, dir) = (checkpoint_pool.clone(), checkpoints_dir.clone());
        async move {
            crate::disk::remove_old_checkpoints(&pool, &dir, days).await;
        }
    });
    if let Some(dir) = &config.backup_dir {
        if !(config.backup_hours > 0.0) {
            anyhow::bail!("FORGETLAB_BACKUP_HOURS must be more than 0, got {}", config.backup_hours);
        }
        let every = Duration::from_secs_f64(config.backup_hours * 3600.0);
        tracing::info!("a backup into {} every {:?}, the newest {} kept", dir.display(), every, config.backup_keep);
        let (pool, data_dir, dir, keep) = (pool.clone(), data_dir.clone(), dir.clone(), config.backup_keep.max(1));
        spawn_periodic(every, false, shutdown_rx.clone(), move || {
            let (pool, data_dir, dir) = (pool.clone(), data_dir.clone(), dir.clone());
            async move { crate::backup::scheduled(&pool, &data_dir, &dir, keep).await }
        });
    }
    match slurm {
        None => {
            let released = queue.release_slurm_holds().await?;
            if released > 0 {
                tracing::warn!(
                    "{released} job(s) submitted to Slurm by an earlier start are no longer followed (FORGETLAB_EXECUTOR=local); local workers may lease them"
                );
            }
            LocalExecutor { worker_bin, server_url, worker_token, workers: config.workers, device: config.device, data_dir }.start(shutdown_rx)
        }
        Some(slurm) => {
            if config.workers != crate::config::Workers::Count(0) && std::env::var_os("FORGETLAB_WORKERS").is_some() {
                tracing::info!("FORGETLAB_EXECUTOR=slurm: no local workers start (FORGETLAB_WORKERS is for the local executor)");
            }
            if addr.ip().is_loopback() && config.slurm_server_url.is_none() {
                tracing::warn!(
                    "serving on {addr}: only Slurm jobs on this machine can reach it; set FORGETLAB_ADDR or FORGETLAB_SLURM_SERVER_URL for a cluster"
                );
            }
            SlurmExecutor::new(slurm, queue).start(shutdown_rx);
        }
    }

    println!("forgetlab is serving http://{addr}");
    tracing::info!("listening on http://{addr}");
    serve(listener, app, async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = shutdown_tx.send(true);
    })
    .await;
    Ok(())
}

/// A client must send its request's headers within this long, or its connection is closed
/// (slowloris: a stranger holding connections open with headers sent a byte at a time).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// At shutdown, connections still open (event streams) get this long to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The nonce of a page's scripts, handed from the page's reactive context to [`page_policy`].
#[derive(Clone, Default)]
struct PageNonce(Arc<std::sync::OnceLock<String>>);

/// Gives a page its Content-Security-Policy (`app::csp`) with the nonce leptos put on its
/// scripts. Set here on the response itself, not through leptos_axum's `ResponseOptions`:
/// a page rendered while other requests of the same browser were in flight sometimes went
/// out without the header that the shell had set there, and the browser then blocked the
/// page's script, stylesheet and images under the fallback `default-src 'none'`.
async fn page_policy(mut request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let slot = PageNonce::default();
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    if let (true, Some(nonce)) = (crate::auth::http::is_html(response.headers()), slot.0.get()) {
        if let Ok(value) = HeaderValue::from_str(&app::csp(nonce)) {
            response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, value);
        }
    }
    response
}

/// Serves `app` until `shutdown` resolves, as `axum::serve` does (each request knows its
/// client's address, `ConnectInfo`), and also with [`HEADER_TIMEOUT`]: hyper enforces a
/// header timeout only when it is given a timer, which `axum::serve` does not give it.
async fn serve(listener: TcpListener, app: Router, shutdown: impl std::future::Future<Output = ()>) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!("accepting a connection failed: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let service = app.clone().map_request(move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            request.map(axum::body::Body::new)
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service)).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!("connection from {peer} ended: {error}");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::info!("connections still open after {SHUTDOWN_GRACE:?} are closed"),
    }
}

/// With no account yet: the administrator from `FORGETLAB_ADMIN_USER` and
/// `FORGETLAB_ADMIN_PASSWORD`, or a one-time setup URL printed for a person to open.
async fn bootstrap_accounts(auth: &Auth, server_url: &str) -> anyhow::Result<()> {
    use crate::admin::failed;
    if auth.has_accounts().await.map_err(failed)? {
        return Ok(());
    }
    let name = std::env::var("FORGETLAB_ADMIN_USER").ok().filter(|v| !v.is_empty());
    let password = std::env::var("FORGETLAB_ADMIN_PASSWORD").ok().filter(|v| !v.is_empty());
    match (name, password) {
        (Some(name), Some(password)) => {
            auth.create_user(&name, &password, protocol::auth::Role::Admin)
                .await
                .map_err(|f| failed(f).context("FORGETLAB_ADMIN_USER/FORGETLAB_ADMIN_PASSWORD"))?;
            println!("forgetlab: created the administrator account {name:?} (FORGETLAB_ADMIN_USER)");
        }
        (None, None) => {
            let token = auth.new_setup_token();
            println!(
                "forgetlab: no accounts yet. Open {server_url}/setup?token={token} within {} minutes to choose the first administrator's name and password \
                 (or set FORGETLAB_ADMIN_USER and FORGETLAB_ADMIN_PASSWORD, or run `forgetlab admin create NAME`).",
                crate::auth::SETUP_MINUTES
            );
        }
        _ => anyhow::bail!("set both FORGETLAB_ADMIN_USER and FORGETLAB_ADMIN_PASSWORD, or neither"),
    }
    Ok(())
}

/// Files the server makes (the database with its password hashes, uploads, checkpoints, and
/// what the workers it starts write) are its user's only: umask 077, and the data directory
/// itself 0700 (issue 19, item 11).
fn private_files(data_dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe { libc::umask(0o077) };
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)).with_context(|| format!("making {} private (mode 0700)", data_dir.display()))?;
    // A database made by an earlier start under a looser umask.
    for name in ["forgetlab.db", "forgetlab.db-wal", "forgetlab.db-shm"] {
        let path = data_dir.join(name);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("making {} private (mode 0600)", path.display()))?;
        }
    }
    Ok(())
}

/// Allocations of 16 MiB and more (each password hash's 19 MiB) are mapped on their own and
/// given back to the system when freed. glibc's default raises its mapping threshold after
/// such a free, so later hashes came from per-thread arenas that keep their memory: 120
/// parallel sign-ins left the server at 690 MiB instead of about 190 (issue 19, item 1).
fn return_large_allocations() {
    // SAFETY: mallopt only tunes glibc's allocator; a refusal (0) leaves the default.
    let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 16 * 1024 * 1024) };
    if set == 0 {
        tracing::warn!("could not set the allocator's mapping threshold; memory after bursts of sign-ins may stay high");
    }
}

/// Runs `job` every `every` until `shutdown` turns true: at once and then each period, or,
/// without `at_start`, first after one period. A run in progress is not cut short.
fn spawn_periodic<F, Fut>(every: Duration, at_start: bool, mut shutdown: watch::Receiver<bool>, mut job: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        if !at_start {
            tick.tick().await;
        }
        loop {
            tokio::select! {
                _ = tick.tick() => job().await,
                _ = shutdown.changed() => break,
            }
        }
    });
}

/// Deletes expired and idle sessions at the start and every hour.
fn spawn_session_purger(auth: Arc<Auth>, shutdown: watch::Receiver<bool>) {
    spawn_periodic(Duration::from_secs(3600), true, shutdown, move || {
        let auth = auth.clone();
        async move {
            match auth.purge_sessions().await {
                Ok(0) => {}
                Ok(n) => tracing::info!("{n} expired or idle session(s) purged"),
                Err(error) => tracing::error!("session purge failed: {error}"),
            }
        }
    });
}

fn spawn_lease_reaper(queue: Arc<Queue>, shutdown: watch::Receiver<bool>) {
    spawn_periodic(Duration::from_secs(5), true, shutdown, move || {
        let queue = queue.clone();
        async move {
            if let Err(error) = queue.requeue_expired().await {
                tracing::error!("lease check failed: {error}");
            }
        }
    });
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
