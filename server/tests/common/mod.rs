//! A real `forgetlab` server process on a free port with its own data directory.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const WORKER_TOKEN: &str = "test-worker-token-of-at-least-32-bytes";
/// The administrator every test server creates at its first start (`FORGETLAB_ADMIN_USER`).
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "test-admin-password";
pub const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

pub struct TestServer {
    pub url: String,
    /// The administrator's API token: [`TestServer::client`] sends it.
    pub token: String,
    pub data_dir: tempfile::TempDir,
    child: Child,
    port: u16,
    workers: u32,
    settings: Vec<(String, String)>,
}

fn spawn_server(data_dir: &Path, port: u16, workers: u32, settings: &[(String, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_forgetlab"))
        .env("FORGETLAB_ADDR", format!("127.0.0.1:{port}"))
        .env("FORGETLAB_DATA_DIR", data_dir)
        .env("FORGETLAB_WORKERS", workers.to_string())
        .env("FORGETLAB_WORKER_BIN", worker_bin())
        .env("FORGETLAB_WORKER_TOKEN", WORKER_TOKEN)
        .env("FORGETLAB_DEVICE", "cpu")
        .env("FORGETLAB_ADMIN_USER", ADMIN_USER)
        .env("FORGETLAB_ADMIN_PASSWORD", ADMIN_PASSWORD)
        // No disk reserve: a test does not depend on the free space of the machine it runs
        // on (the disk tests set their own thresholds).
        .env("FORGETLAB_DISK_WARN_MB", "0")
        .env("FORGETLAB_DISK_MIN_FREE_MB", "0")
        .env("RUST_LOG", "info,tower_http=warn")
        .envs(settings.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .spawn()
        .expect("starting the forgetlab binary")
}

/// An HTTP client that sends `Authorization: Bearer <token>` with every request.
pub fn client_with(token: &str) -> reqwest::blocking::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().expect("a header value"));
    reqwest::blocking::Client::builder().default_headers(headers).build().expect("an HTTP client")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port()
}

/// The worker binary: `FORGETLAB_WORKER_BIN`, or the one `cargo build -p trainer` made.
pub fn worker_bin() -> PathBuf {
    if let Ok(path) = std::env::var("FORGETLAB_WORKER_BIN") {
        return path.into();
    }
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug/forgetlab-worker")
}

pub fn require_fashion_mnist() {
    assert!(Path::new(FASHION_MNIST).is_dir(), "{FASHION_MNIST} is missing: install Debian's dataset-fashion-mnist (scripts/test does)");
}

impl TestServer {
    pub fn start(workers: u32) -> Self {
        Self::start_with(workers, &[])
    }

    /// Starts a server with extra environment settings (e.g. a short lease).
    pub fn start_with(workers: u32, settings: &[(&str, &str)]) -> Self {
        Self::start_in(tempfile::tempdir().expect("a temporary data directory"), workers, settings)
    }

    /// Starts a server on a data directory prepared beforehand (a database from a fixture).
    pub fn start_in(data_dir: tempfile::TempDir, workers: u32, settings: &[(&str, &str)]) -> Self {
        if workers > 0 {
            assert!(worker_bin().is_file(), "no worker binary at {}: run `cargo build -p trainer` first (scripts/test does)", worker_bin().display());
        }
        let port = free_port();
        let settings: Vec<(String, String)> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let child = spawn_server(data_dir.path(), port, workers, &settings);
        let mut server = Self { url: format!("http://127.0.0.1:{port}"), token: String::new(), data_dir, child, port, workers, settings };
        server.wait_until_up();
        server.token = server.new_token(ADMIN_USER, ADMIN_PASSWORD);
        server
    }

    /// A new API token for an account, made with its name and password (HTTP Basic).
    pub fn new_token(&self, name: &str, password: &str) -> String {
        let response = reqwest::blocking::Client::new()
            .post(self.api("/tokens"))
            .basic_auth(name, Some(password))
            .json(&serde_json::json!({"name": "tests"}))
            .send()
            .expect("POST /tokens");
        assert_eq!(response.status(), 201, "token refused: {}", response.text().unwrap_or_default());
        response.json::<serde_json::Value>().expect("token JSON")["token"].as_str().expect("a token").to_owned()
    }

    /// An HTTP client signed in as the administrator (its API token).
    pub fn client(&self) -> reqwest::blocking::Client {
        client_with(&self.token)
    }

    /// Creates an account (as the administrator) and returns a client signed in as it.
    pub fn account(&self, name: &str, role: &str) -> reqwest::blocking::Client {
        let password = format!("{name}-password-123");
        let response =
            self.client().post(self.api("/users")).json(&serde_json::json!({"name": name, "password": password, "role": role})).send().expect("POST /users");
        assert_eq!(response.status(), 201, "account refused: {}", response.text().unwrap_or_default());
        client_with(&self.new_token(name, &password))
    }

    /// Kills the server with SIGKILL (its workers follow it), leaving it stopped until
    /// [`TestServer::kill_and_restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the server with SIGKILL (its workers follow it) and starts it again on the same
    /// port and data directory.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_server(self.data_dir.path(), self.port, self.workers, &self.settings);
        self.wait_until_up();
    }

    /// Kills the server and starts it again on the same port and data directory, with other
    /// workers and settings.
    pub fn restart_with(&mut self, workers: u32, settings: &[(&str, &str)]) {
        self.workers = workers;
        self.settings = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.kill_and_restart();
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = reqwest::blocking::Client::new();
        while Instant::now() < deadline {
            if client.get(format!("{}/api/v1/health", self.url)).send().is_ok_and(|r| r.status().is_success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the server at {} did not answer within 60 s", self.url);
    }

    /// The server's process id (its local workers are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Process ids of the worker processes the server started (children of any of its
    /// threads: Linux lists a child under the thread that spawned it).
    pub fn worker_pids(&self) -> Vec<u32> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid())).expect("the server's /proc entry");
        tasks
            .flatten()
            .flat_map(|task| {
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default().split_whitespace().map(str::to_owned).collect::<Vec<_>>()
            })
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    pub fn database(&self) -> PathBuf {
        self.data_dir.path().join("forgetlab.db")
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that does not follow redirects, so answers can be inspected.
pub fn browser() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("an HTTP client")
}

/// A page fetched with a session cookie: status, headers, body.
pub fn page(server: &TestServer, cookie: &str, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let response = browser().get(format!("{}{path}", server.url)).header(reqwest::header::COOKIE, cookie).send().expect("GET a page");
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, response.text().expect("the page's text"))
}

/// Signs in through the form (as if over HTTPS behind a proxy when `https`): the session
/// cookie (`name=value`), the Set-Cookie header, and the answer's headers.
pub fn sign_in(server: &TestServer, name: &str, password: &str, https: bool) -> (String, String, reqwest::header::HeaderMap) {
    let mut request = browser().post(format!("{}/login", server.url)).form(&[("name", name), ("password", password), ("next", "/jobs")]);
    if https {
        request = request.header("x-forwarded-proto", "https");
    }
    let response = request.send().expect("POST /login");
    assert_eq!(response.status(), 303, "sign-in refused");
    let set = response.headers()[reqwest::header::SET_COOKIE].to_str().expect("a Set-Cookie header").to_owned();
    (set.split(';').next().expect("a cookie").to_owned(), set, response.headers().clone())
}

/// The CSRF token a page carries for its forms.
pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field on the page") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().expect("the token").to_owned()
}

/// The URL a page's form posts to, by the server function's name.
pub fn form_action(html: &str, function: &str) -> String {
    let at = html.find(&format!("/{function}")).unwrap_or_else(|| panic!("no form for {function} on the page"));
    let start = html[..at].rfind('"').expect("an attribute") + 1;
    let end = at + html[at..].find('"').expect("the attribute's end");
    html[start..end].to_owned()
}

/// Polls a run until it ends; returns its detail JSON.
pub fn wait_for_run(server: &TestServer, id: i64, timeout: Duration) -> serde_json::Value {
    let client = server.client();
    let deadline = Instant::now() + timeout;
    loop {
        let run: serde_json::Value = client.get(server.api(&format!("/runs/{id}"))).send().expect("GET run").json().expect("run JSON");
        let status = run["status"].as_str().unwrap_or_default().to_owned();
        if ["succeeded", "failed", "cancelled"].contains(&status.as_str()) {
            return run;
        }
        assert!(Instant::now() < deadline, "run {id} still {status} after {timeout:?}: {run}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Launches a run through the API; returns its id.
pub fn launch(server: &TestServer, spec: serde_json::Value) -> i64 {
    let response = server.client().post(server.api("/runs")).json(&spec).send().expect("POST /runs");
    assert_eq!(response.status(), 201, "launch refused: {}", response.text().unwrap_or_default());
    response.json::<serde_json::Value>().unwrap()["id"].as_i64().expect("run id")
}

/// A run's stored per-sample records, read straight from the server's database.
pub async fn records(database: &Path, run_id: i64) -> server::records::RunRecords {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", database.display())).await.expect("open the database read-only");
    server::records::read(&pool, run_id).await.expect("the run's records")
}

/// The lines of a run's job log (`GET /runs/{id}/log`), oldest first.
pub fn log_lines(server: &TestServer, run_id: i64) -> Vec<String> {
    let log: serde_json::Value = server.client().get(server.api(&format!("/runs/{run_id}/log?tail=2000"))).send().expect("GET log").json().expect("log JSON");
    log["lines"].as_array().map(|lines| lines.iter().map(|l| l["line"].as_str().unwrap_or_default().to_owned()).collect()).unwrap_or_default()
}
