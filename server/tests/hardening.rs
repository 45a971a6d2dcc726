//! Issue 19: what a stranger cannot do to the site (guess passwords in bursts, exhaust its
//! memory, hold its workers' routes open) and what a member cannot do either (queue past
//! their quota, probe paths, keep a session the account ended), each through HTTP against a
//! real server.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{TestServer, WORKER_TOKEN, browser, client_with, csrf_of, form_action, page, sign_in};
use reqwest::blocking::Client;
use reqwest::header::{CACHE_CONTROL, COOKIE, LOCATION};
use serde_json::{Value, json};

/// A run that never starts (these servers have no workers).
fn tiny() -> Value {
    json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 1, "train_subset": 4})
}

/// The server process's resident memory now (VmRSS), in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/pid/status");
    line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
}

/// Runs `work` while sampling the process's resident memory every 10 ms; its result and the
/// most memory seen.
fn with_peak<T>(pid: u32, work: impl FnOnce() -> T) -> (T, f64) {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = rss_mib(pid);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_mib(pid));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        let result = work();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (result, sampler.join().unwrap())
    })
}

/// How each of `n` parallel sign-ins was answered: "wrong" (a password was checked and
/// refused), "limited" (429), "busy" (503).
fn burst(n: usize, request: impl Fn(usize) -> reqwest::blocking::RequestBuilder + Sync) -> Vec<&'static str> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let request = &request;
                scope.spawn(move || {
                    let response = request(i).send().unwrap();
                    let location = response.headers().get(LOCATION).map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
                    match response.status().as_u16() {
                        401 => "wrong",
                        429 => "limited",
                        503 => "busy",
                        303 if location.contains("wrong+user+name") => "wrong",
                        303 if location.contains("too+many") => "limited",
                        303 if location.contains("busy") => "busy",
                        other => panic!("sign-in {i}: {other} {location}"),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn count(answers: &[&str], what: &str) -> usize {
    answers.iter().filter(|a| **a == what).count()
}

#[test]
fn parallel_guesses_meet_the_limit_as_they_start_and_hashing_memory_stays_bounded() {
    // The proxy case: the server trusts 127.0.0.1 to say who its client is.
    let server = TestServer::start_with(0, &[("FORGETLAB_TRUSTED_PROXIES", "127.0.0.1")]);
    server.account("ada", "member");
    let login = |name: String, client: Option<String>| {
        let mut request = browser().post(format!("{}/login", server.url)).form(&[("name", name.as_str()), ("password", "a wrong guess")]);
        if let Some(client) = client {
            request = request.header("x-forwarded-for", client);
        }
        request
    };

    // 1. One name, from one client, 60 guesses at once: exactly the 5 the limit allows are
    // checked (the old limiter counted a failure when its hash finished, so every guess of
    // the burst was checked).
    let answers = burst(60, |_| login("ada".into(), Some("203.0.113.7".into())));
    assert_eq!((count(&answers, "wrong"), count(&answers, "limited") + count(&answers, "busy")), (5, 55), "{answers:?}");

    // 2. One client, 100 names: the client's limit of 20 holds, counting its 5 above.
    let answers = burst(100, |i| login(format!("user{i}"), Some("203.0.113.7".into())));
    assert_eq!(count(&answers, "wrong"), 15, "{answers:?}");

    // 3. IPv6 clients are known by their /64: 30 addresses of one /64 share one limit.
    let answers = burst(30, |i| login(format!("v6user{i}"), Some(format!("2001:db8:1:2::{:x}", i + 1))));
    assert_eq!(count(&answers, "wrong"), 20, "{answers:?}");

    // 4. 120 clients at once (each its own address, each its own name): every guess is
    // allowed by the limits, so only the bound on concurrent hashes keeps memory in check.
    // Argon2id takes 19 MiB per hash; the server computes 2 per core at a time.
    let before = rss_mib(server.pid());
    let (answers, peak) = with_peak(server.pid(), || burst(120, |i| login(format!("many{i}"), Some(format!("198.51.100.{}", i + 1)))));
    assert_eq!(count(&answers, "limited"), 0, "{answers:?}");
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    let bound = before + (2.0 * cores + 2.0) * 20.0;
    eprintln!(
        "sign-in burst of 120 clients: resident memory {before:.0} MiB before, at most {peak:.0} MiB during ({} wrong, {} busy); bound {bound:.0} MiB",
        count(&answers, "wrong"),
        count(&answers, "busy")
    );
    assert!(peak < bound, "resident memory reached {peak:.0} MiB during the burst, more than {bound:.0} MiB (before: {before:.0} MiB)");
    let after = with_peak(server.pid(), || std::thread::sleep(Duration::from_millis(200))).1;
    assert!(after < before + 40.0, "the hashes' memory is given back: {after:.0} MiB after, {before:.0} MiB before");

    // A client that is not a trusted proxy cannot pick its address: the header is ignored.
    let direct = TestServer::start(0);
    let answers = burst(30, |i| {
        browser()
            .post(format!("{}/login", direct.url))
            .header("x-forwarded-for", format!("192.0.2.{}", i + 1))
            .form(&[("name", format!("d{i}").as_str()), ("password", "a wrong guess")])
    });
    assert_eq!(count(&answers, "wrong"), 20, "one client, however it names itself: {answers:?}");
    // Malformed names never reach the limiter: refused, and no limit is used up by them.
    let odd = browser().post(format!("{}/login", direct.url)).form(&[("name", "x".repeat(5000).as_str()), ("password", "p")]).send().unwrap();
    assert!(odd.headers()[LOCATION].to_str().unwrap().contains("wrong+user+name"));
}

#[test]
fn worker_routes_check_the_token_before_the_body_and_bound_it() {
    let server = TestServer::start_with(0, &[("FORGETLAB_WORKER_BODY_SECONDS", "2")]);
    let port = server.url.rsplit(':').next().unwrap().to_owned();
    // Headers that announce 200 MB, and no body: the answer must come without it.
    let ask = |path: &str, token: &str, length: usize, body: &[u8]| -> (String, Duration) {
        let mut stream = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = Instant::now();
        write!(stream, "PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n")
            .unwrap();
        stream.write_all(body).unwrap();
        let mut answer = vec![0u8; 4096];
        let n = stream.read(&mut answer).unwrap_or(0);
        (String::from_utf8_lossy(&answer[..n]).into_owned(), started.elapsed())
    };
    let (answer, took) = ask("/api/v1/worker/jobs/1/epochs/1", "not-a-token", 200_000_000, b"");
    assert!(answer.starts_with("HTTP/1.1 401"), "a wrong token is refused before any body: {answer}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let (answer, _) = ask("/api/v1/worker/jobs/1/samples", WORKER_TOKEN, 200_000_000, b"");
    assert!(answer.starts_with("HTTP/1.1 401"), "the worker token does not open a job's routes: {answer}");

    // Leasing takes the worker token, and a small body only.
    let worker = client_with(WORKER_TOKEN);
    let big = json!({"worker": "w", "padding": "x".repeat(100 * 1024)});
    let response = worker.post(server.api("/worker/lease")).json(&big).send().unwrap();
    assert_eq!(response.status(), 413, "{}", response.text().unwrap());
    let launched: Value = server.client().post(server.api("/runs")).json(&tiny()).send().unwrap().json().unwrap();
    let lease: Value = worker.post(server.api("/worker/lease")).json(&json!({"worker": "w"})).send().unwrap().json().unwrap();
    assert_eq!(lease["run_id"], launched["id"]);
    let (job, token) = (lease["job_id"].as_i64().unwrap(), lease["job_token"].as_str().unwrap().to_owned());
    // A heartbeat route takes 64 KiB, not 256 MiB.
    let fat = json!({"epoch": 0, "padding": "x".repeat(100 * 1024)});
    assert_eq!(client_with(&token).post(server.api(&format!("/worker/jobs/{job}/heartbeat"))).json(&fat).send().unwrap().status(), 413);

    // A slow body is cut off (FORGETLAB_WORKER_BODY_SECONDS), even with the job's token.
    let (answer, took) = ask(&format!("/api/v1/worker/jobs/{job}/samples"), &token, 1000, b"{\"samples\": [");
    assert!(answer.starts_with("HTTP/1.1 408"), "a stalled body: {answer}");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(8), "{took:?}");
}

/// ada, a member with two API tokens (the one `account` made and one more), signed in twice;
/// her password form, submitted from the first session: its answer's text.
struct Ada {
    token: String,
    here: String,
    elsewhere: String,
    csrf: String,
    action: String,
}

impl Ada {
    fn on(server: &TestServer) -> Self {
        server.account("ada", "member");
        let token = server.new_token("ada", "ada-password-123");
        let (here, ..) = sign_in(server, "ada", "ada-password-123", false);
        let (elsewhere, ..) = sign_in(server, "ada", "ada-password-123", false);
        let (_, _, html) = page(server, &here, "/account");
        assert!(html.contains("name=\"revoke_tokens\""), "the form offers to revoke the tokens");
        Self { token, here, elsewhere, csrf: csrf_of(&html), action: form_action(&html, "change_password") }
    }

    fn change(&self, server: &TestServer, old: &str, new: &str, revoke: bool) -> String {
        let mut fields = vec![("old_password", old), ("new_password", new), ("confirm", new), ("csrf", self.csrf.as_str())];
        if revoke {
            fields.push(("revoke_tokens", "on"));
        }
        let response = browser()
            .post(format!("{}{}", server.url, self.action))
            .header(COOKIE, &self.here)
            .header("accept", "application/json")
            .form(&fields)
            .send()
            .unwrap();
        response.text().unwrap()
    }
}

#[test]
fn a_password_change_ends_other_sessions_and_can_revoke_tokens_under_the_sign_in_limit() {
    let server = TestServer::start(0);
    let ada = Ada::on(&server);
    // Wrong current passwords count against the same limit as sign-in: the 6th waits.
    for attempt in 0..5 {
        let said = ada.change(&server, &format!("wrong-password-{attempt}"), "a brand new password", false);
        assert!(said.contains("current password is wrong"), "{said}");
    }
    let said = ada.change(&server, "ada-password-123", "a brand new password", true);
    assert!(said.contains("too many failed sign-ins"), "the right password waits out the limit too: {said}");
    let waited = browser().post(format!("{}/login", server.url)).form(&[("name", "ada"), ("password", "ada-password-123")]).send().unwrap();
    assert!(waited.headers()[LOCATION].to_str().unwrap().contains("too+many"), "and so does sign-in");

    // A fresh server (as after the window): the change ends the other session and, asked,
    // revokes both tokens.
    let server = TestServer::start(0);
    let ada = Ada::on(&server);
    let said = ada.change(&server, "ada-password-123", "a brand new password", true);
    assert!(said.contains("1 other session(s) ended") && said.contains("2 API token(s) revoked"), "{said}");
    assert_eq!(page(&server, &ada.here, "/account").0, 200, "the session that changed it stays");
    assert_eq!(page(&server, &ada.elsewhere, "/account").0, 303, "the other session ended");
    assert_eq!(client_with(&ada.token).get(server.api("/me")).send().unwrap().status(), 401, "the token is revoked");
    sign_in(&server, "ada", "a brand new password", false);
}

#[test]
fn members_have_a_quota_a_priority_ceiling_and_studies_keep_their_cap() {
    let server = TestServer::start_with(0, &[("FORGETLAB_MEMBER_MAX_ACTIVE_RUNS", "3"), ("FORGETLAB_MEMBER_MAX_PRIORITY", "5")]);
    let ada = server.account("ada", "member");
    let launch = |client: &Client, spec: Value| {
        let response = client.post(server.api("/runs")).json(&spec).send().unwrap();
        (response.status().as_u16(), response.json::<Value>().unwrap())
    };
    let mut high = tiny();
    high["priority"] = json!(6);
    let (status, body) = launch(&ada, high.clone());
    assert_eq!(status, 422, "{body}");
    assert!(body["errors"]["priority"].as_str().unwrap().contains("at priority 5 at most"), "{body}");
    assert_eq!(launch(&server.client(), high).0, 201, "administrators may use any priority");
    let mut ok = tiny();
    ok["priority"] = json!(5);
    for _ in 0..3 {
        assert_eq!(launch(&ada, ok.clone()).0, 201);
    }
    let (status, body) = launch(&ada, tiny());
    assert_eq!(status, 429, "{body}");
    assert!(body["message"].as_str().unwrap().contains("at most 3"), "{body}");
    let study = json!({"name": "s", "archs": ["small_cnn"], "seeds": [1, 2], "base": {"dataset": "fashion-mnist", "epochs": 1, "train_subset": 4}});
    let (status, body) = {
        let r = ada.post(server.api("/studies")).json(&study).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    assert_eq!(status, 429, "a study past the quota queues nothing: {body}");
    assert_eq!(launch(&server.client(), tiny()).0, 201, "administrators have no quota");

    // The study cap of 200 runs holds for seeds added later too.
    let response = server.client().post(server.api("/studies")).json(&study).send().unwrap();
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().unwrap()["id"].as_i64().unwrap();
    let seeds: Vec<u64> = (3..=201).collect();
    let response = server.client().post(server.api(&format!("/studies/{id}/seeds"))).json(&json!({"seeds": seeds})).send().unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().unwrap();
    assert!(body["errors"]["seeds"].as_str().unwrap().contains("201 runs"), "{body}");
    let detail: Value = server.client().get(server.api(&format!("/studies/{id}"))).send().unwrap().json().unwrap();
    assert_eq!(detail["runs"].as_array().map(Vec::len), Some(2), "nothing was added");
}

#[test]
fn sessions_end_when_idle_their_streams_end_at_sign_out_and_old_rows_are_purged() {
    let mut server = TestServer::start(0);
    server.account("ada", "member");
    let (idle, ..) = sign_in(&server, "ada", "ada-password-123", false);
    let (live, ..) = sign_in(&server, "ada", "ada-password-123", false);
    assert_eq!(page(&server, &idle, "/account").0, 200);
    // Unused for 13 hours (the default idle time is 12).
    let db = server.database();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sessions = |sql: &str| {
        runtime.block_on(async {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
            let n: i64 = if sql.starts_with("UPDATE") {
                sqlx::query(sql).execute(&pool).await.unwrap().rows_affected() as i64
            } else {
                sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
            };
            pool.close().await;
            n
        })
    };
    let hash = |cookie: &str| {
        use sha2::Digest;
        let value = cookie.split('=').nth(1).unwrap();
        sha2::Sha256::digest(value.as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let set_idle = format!("UPDATE sessions SET last_seen_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-13 hours') WHERE id_hash = '{}'", hash(&idle));
    assert_eq!(sessions(&set_idle), 1);
    assert_eq!(page(&server, &idle, "/account").0, 303, "an idle session no longer signs in");
    assert_eq!(browser().get(server.api("/me")).header(COOKIE, &idle).send().unwrap().status(), 401);
    assert_eq!(page(&server, &live, "/account").0, 200);

    // An event stream opened with a session ends when that session signs out.
    let (_, _, html) = page(&server, &live, "/account");
    let csrf = csrf_of(&html);
    let mut stream = Client::builder().timeout(Duration::from_secs(20)).build().unwrap().get(server.api("/events")).header(COOKIE, &live).send().unwrap();
    assert_eq!(stream.status(), 200);
    let ended = std::thread::spawn(move || {
        let started = Instant::now();
        let mut sink = Vec::new();
        let result = stream.read_to_end(&mut sink);
        (result.is_ok(), started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    // The stream's rechecks do not count as using the session, or an open tab would keep it
    // from ever going idle: seen 2 hours ago, then a sign-out elsewhere makes the stream
    // recheck, and the session is still last seen 2 hours ago.
    let set_seen = format!("UPDATE sessions SET last_seen_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-2 hours') WHERE id_hash = '{}'", hash(&live));
    assert_eq!(sessions(&set_seen), 1);
    let other = sign_in(&server, "ada", "ada-password-123", false).0;
    browser()
        .post(format!("{}/logout", server.url))
        .header(COOKIE, &other)
        .form(&[("csrf", csrf_of(&page(&server, &other, "/account").2).as_str())])
        .send()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let seen_ago = format!("SELECT CAST(strftime('%s', 'now') - strftime('%s', last_seen_at) AS INTEGER) FROM sessions WHERE id_hash = '{}'", hash(&live));
    assert!(sessions(&seen_ago) >= 7000, "the stream's recheck marked the session used: last seen {} s ago", sessions(&seen_ago));
    let out = browser().post(format!("{}/logout", server.url)).header(COOKIE, &live).form(&[("csrf", csrf.as_str())]).send().unwrap();
    assert_eq!(out.status(), 303);
    let (clean, took) = ended.join().unwrap();
    assert!(clean && took < Duration::from_secs(10), "the stream ended with the session (clean end: {clean}, after {took:?})");

    // The idle row is purged at the next start (and hourly).
    assert!(sessions("SELECT COUNT(*) FROM sessions") >= 1);
    server.kill_and_restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sessions("SELECT COUNT(*) FROM sessions") > 0 {
        assert!(Instant::now() < deadline, "the idle session's row is still there");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn over_https_the_cookie_is_host_prefixed_and_secure_and_browsers_are_told_to_stay() {
    let server = TestServer::start(0);
    server.account("ada", "member");
    let (cookie, set, headers) = sign_in(&server, "ada", "ada-password-123", true);
    assert!(cookie.starts_with("__Host-forgetlab_session="), "{set}");
    for part in ["Secure", "Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(set.contains(part), "{part} missing: {set}");
    }
    assert!(!set.contains("Domain"), "{set}");
    assert!(headers["strict-transport-security"].to_str().unwrap().contains("max-age="), "{headers:?}");
    let response = browser().get(format!("{}/account", server.url)).header(COOKIE, &cookie).header("x-forwarded-proto", "https").send().unwrap();
    assert_eq!(response.status(), 200, "the prefixed cookie signs in");
    assert!(response.headers().contains_key("strict-transport-security"));
    // Pages carry the session's CSRF token: no cache may keep them.
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    // Plain HTTP (a laptop on localhost): the plain name, no HSTS.
    let (cookie, set, headers) = sign_in(&server, "ada", "ada-password-123", false);
    assert!(cookie.starts_with("forgetlab_session=") && !set.contains("Secure"), "{set}");
    assert!(!headers.contains_key("strict-transport-security"));
    // Thumbnails are behind the sign-in: private to the browser's cache.
    if std::path::Path::new(common::FASHION_MNIST).is_dir() {
        let image = server.client().get(server.api("/datasets/fashion-mnist/train/0.png")).send().unwrap();
        assert_eq!(image.status(), 200);
        assert!(image.headers()[CACHE_CONTROL].to_str().unwrap().starts_with("private"), "{:?}", image.headers()[CACHE_CONTROL]);
    }
}

#[test]
fn the_weights_field_tells_nothing_about_paths_outside_the_roots() {
    common::require_fashion_mnist();
    let server = TestServer::start(0);
    let refusal = |weights: &str| {
        let mut spec = tiny();
        spec["weights"] = json!(weights);
        let body: Value = server.client().post(server.api("/runs")).json(&spec).send().unwrap().json().unwrap();
        body["errors"]["weights"].as_str().unwrap_or_default().replace(weights, "PATH")
    };
    // /etc/passwd exists, the other does not: the answers must not differ.
    let (exists, missing) = (refusal("/etc/passwd"), refusal("/etc/no-such-file-here"));
    assert!(!exists.is_empty());
    assert_eq!(exists, missing);
    assert_eq!(refusal("/usr/share/datasets"), missing, "nor for a folder");
}

#[test]
fn a_short_worker_token_stops_the_start_and_aborted_uploads_leave_no_part_files() {
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_forgetlab"))
        .env("FORGETLAB_DATA_DIR", data.path())
        .env("FORGETLAB_ADDR", "127.0.0.1:0")
        .env("FORGETLAB_WORKERS", "0")
        .env("FORGETLAB_WORKER_TOKEN", "short-token")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("FORGETLAB_WORKER_TOKEN has 11 bytes") && said.contains("at least 32"), "{said}");

    let server = TestServer::start(0);
    let port = server.url.rsplit(':').next().unwrap().to_owned();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        write!(
            stream,
            "PUT /api/v1/weights/broken.safetensors HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 1000000\r\n\r\n",
            server.token
        )
        .unwrap();
        stream.write_all(&[7u8; 300_000]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(stream);
    }
    let weights = server.data_dir.path().join("datasets/weights");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<String> =
            std::fs::read_dir(&weights).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "aborted uploads left {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every file and folder under `dir` that other local users could read: (path, mode).
pub fn readable_by_others(dir: &std::path::Path) -> Vec<(String, u32)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if meta.permissions().mode() & 0o077 != 0 && !meta.file_type().is_symlink() {
            found.push((path.display().to_string(), meta.permissions().mode() & 0o777));
        }
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).into_iter().flatten().flatten().map(|e| e.path()));
        }
    }
    found
}

#[test]
fn files_are_private_and_workers_get_no_secrets() {
    common::require_fashion_mnist();
    let server = TestServer::start_with(1, &[("FORGETLAB_TEST_SECRET", "do-not-leak")]);
    let mut weights = 2u64.to_le_bytes().to_vec();
    weights.extend(b"{}");
    assert_eq!(server.client().put(server.api("/weights/tiny.safetensors")).body(weights).send().unwrap().status(), 201);
    let id = common::launch(&server, json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 1, "train_subset": 64, "device": "cpu"}));
    let run = common::wait_for_run(&server, id, Duration::from_secs(300));
    assert_eq!(run["status"], "succeeded", "{run}");

    let exposed = readable_by_others(server.data_dir.path());
    assert!(exposed.is_empty(), "files other users can read: {exposed:?}");
    assert!(server.database().is_file());

    let workers = server.worker_pids();
    assert!(!workers.is_empty(), "a local worker runs");
    for pid in workers {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let names: Vec<String> =
            environ.split(|&b| b == 0).filter_map(|v| std::str::from_utf8(v).ok()).filter_map(|v| v.split('=').next()).map(str::to_owned).collect();
        for secret in ["FORGETLAB_ADMIN_PASSWORD", "FORGETLAB_ADMIN_USER", "FORGETLAB_TEST_SECRET", "FORGETLAB_ADDR"] {
            assert!(!names.iter().any(|n| n == secret), "worker {pid} inherited {secret}: {names:?}");
        }
        for needed in ["FORGETLAB_SERVER", "FORGETLAB_WORKER_TOKEN", "FORGETLAB_DATA_DIR", "PATH"] {
            assert!(names.iter().any(|n| n == needed), "worker {pid} lacks {needed}: {names:?}");
        }
    }
}

#[test]
fn a_client_that_sends_its_headers_slowly_is_cut_off() {
    let server = TestServer::start(0);
    let port = server.url.rsplit(':').next().unwrap().to_owned();
    let mut stream = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = Instant::now();
    // A byte now and then, never the blank line that ends the headers.
    stream.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n").unwrap();
    let closer = std::thread::spawn({
        let mut stream = stream.try_clone().unwrap();
        move || {
            for _ in 0..20 {
                std::thread::sleep(Duration::from_secs(1));
                if stream.write_all(b"X").is_err() {
                    break;
                }
            }
        }
    });
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(9) && took < Duration::from_secs(16), "the connection was closed after {took:?}");
    closer.join().unwrap();
    // The server still answers everyone else.
    assert_eq!(reqwest::blocking::get(server.api("/health")).unwrap().status(), 200);
}
