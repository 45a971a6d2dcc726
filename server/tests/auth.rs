//! Accounts, roles, tokens, sessions, CSRF and security headers on a real server (issue 7):
//! for each role what it may and may not do, through the JSON API, the pages and the
//! server functions.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ADMIN_PASSWORD, ADMIN_USER, TestServer, WORKER_TOKEN, browser, client_with, csrf_of, form_action, page};
use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

/// A run that never starts (the servers here have no workers), enough to own and cancel.
fn tiny() -> Value {
    json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 1, "train_subset": 4})
}

/// Signs in through the form; the session cookie (`name=value`).
fn sign_in(server: &TestServer, name: &str, password: &str) -> String {
    let (cookie, set, headers) = common::sign_in(server, name, password, false);
    assert_eq!(headers[LOCATION], "/jobs", "signed in, back to `next`");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attribute), "session cookie lacks {attribute}: {set}");
    }
    cookie
}

fn status(response: Response) -> (u16, String) {
    let status = response.status().as_u16();
    (status, response.text().unwrap_or_default())
}

fn launch_as(server: &TestServer, client: &Client, spec: &Value) -> (u16, Value) {
    let response = client.post(server.api("/runs")).json(spec).send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn every_role_does_what_it_may_and_nothing_more() {
    let server = TestServer::start(0);
    let anonymous = Client::new();
    let admin = server.client();
    let ada = server.account("ada", "member");
    let bob = server.account("bob", "member");
    let vic = server.account("vic", "viewer");

    // Strangers: no API, no pages (sent to sign in), only the public routes.
    let refused = anonymous.get(server.api("/runs")).send().unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().contains_key("www-authenticate"));
    assert!(refused.text().unwrap().contains("sign in first"));
    let to_login = browser().get(format!("{}/runs/1?tab=x", server.url)).send().unwrap();
    assert_eq!(to_login.status(), 303);
    assert_eq!(to_login.headers()[LOCATION], "/login?next=%2Fruns%2F1%3Ftab%3Dx");
    assert_eq!(anonymous.post(server.api("/runs")).json(&tiny()).send().unwrap().status(), 401);
    assert_eq!(anonymous.get(format!("{}/login", server.url)).send().unwrap().status(), 200);
    assert_eq!(anonymous.get(server.api("/health")).send().unwrap().status(), 200);
    assert_eq!(anonymous.get(server.api("/datasets/fashion-mnist/train/0.png")).send().unwrap().status(), 401);

    // Members launch as themselves, and cancel and retry only their own runs.
    let (code, launched) = launch_as(&server, &ada, &tiny());
    assert_eq!(code, 201, "{launched}");
    let ada_run = launched["id"].as_i64().unwrap();
    let (_, launched) = launch_as(&server, &bob, &tiny());
    let bob_run = launched["id"].as_i64().unwrap();
    let run: Value = ada.get(server.api(&format!("/runs/{ada_run}"))).send().unwrap().json().unwrap();
    assert_eq!(run["owner"], "ada");
    let (code, body) = launch_as(&server, &ada, &json!({"dataset": "fashion-mnist", "arch": "small_cnn", "owner": "bob"}));
    assert_eq!(code, 422);
    assert!(body["errors"]["owner"].as_str().unwrap().contains("signed-in account (ada)"), "{body}");
    let (code, text) = status(ada.post(server.api(&format!("/runs/{bob_run}/cancel"))).send().unwrap());
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("belongs to bob"), "{text}");
    assert_eq!(ada.post(server.api(&format!("/runs/{ada_run}/cancel"))).send().unwrap().status(), 200);
    assert_eq!(ada.post(server.api(&format!("/runs/{ada_run}/retry"))).send().unwrap().status(), 200);
    assert_eq!(bob.post(server.api(&format!("/runs/{ada_run}/retry"))).send().unwrap().status(), 403);
    // Administrators change anyone's runs; only they manage accounts.
    assert_eq!(admin.post(server.api(&format!("/runs/{bob_run}/cancel"))).send().unwrap().status(), 200);
    assert_eq!(ada.get(server.api("/users")).send().unwrap().status(), 403);
    assert_eq!(ada.post(server.api("/users")).json(&json!({"name": "eve", "password": "long enough pw", "role": "admin"})).send().unwrap().status(), 403);
    let users: Vec<Value> = admin.get(server.api("/users")).send().unwrap().json().unwrap();
    assert_eq!(users.iter().map(|u| u["name"].as_str().unwrap()).collect::<Vec<_>>(), ["ada", "admin", "bob", "vic"]);
    assert!(users.iter().all(|u| u.get("password_hash").is_none()));
    // Passwords of at least 12 characters (ASVS 2.1.1; issue 19, item 15): 11 are refused.
    let (code, text) = status(admin.post(server.api("/users")).json(&json!({"name": "eve", "password": "eleven char", "role": "member"})).send().unwrap());
    assert!((400..500).contains(&code) && text.contains("at least 12 characters"), "{code} {text}");
    assert_eq!(admin.post(server.api("/users")).json(&json!({"name": "eve", "password": "twelve chars", "role": "member"})).send().unwrap().status(), 201);

    // Studies: members launch their own; another member cannot cancel or extend them.
    let study = json!({"preset": "architecture-dependent-forgetting-small", "seeds": [1]});
    let response = ada.post(server.api("/studies")).json(&study).send().unwrap();
    assert_eq!(response.status(), 201);
    let study_id = response.json::<Value>().unwrap()["id"].as_i64().unwrap();
    assert_eq!(bob.post(server.api(&format!("/studies/{study_id}/cancel"))).send().unwrap().status(), 403);
    assert_eq!(bob.post(server.api(&format!("/studies/{study_id}/seeds"))).json(&json!({"seeds": [2]})).send().unwrap().status(), 403);
    assert_eq!(ada.post(server.api(&format!("/studies/{study_id}/cancel"))).send().unwrap().status(), 200);

    // Viewers browse everything and change nothing but their own tokens.
    assert_eq!(vic.get(server.api("/runs")).send().unwrap().status(), 200);
    assert_eq!(vic.get(server.api(&format!("/runs/{ada_run}"))).send().unwrap().status(), 200);
    let (code, text) = status(vic.post(server.api("/runs")).json(&tiny()).send().unwrap());
    assert_eq!(code, 403);
    assert!(text.contains("viewer"), "{text}");
    assert_eq!(vic.post(server.api("/studies")).json(&study).send().unwrap().status(), 403);
    assert_eq!(vic.post(server.api(&format!("/runs/{ada_run}/cancel"))).send().unwrap().status(), 403);
    assert_eq!(vic.post(server.api("/datasets")).json(&json!({"name": "x", "path": "/usr/share/datasets/fashion-mnist"})).send().unwrap().status(), 403);
    assert_eq!(vic.post(server.api("/tokens")).json(&json!({"name": "vic's notebook"})).send().unwrap().status(), 201);
    assert_eq!(vic.get(server.api("/me")).send().unwrap().json::<Value>().unwrap()["role"], "viewer");

    // A disabled account's tokens stop working at once; the last admin cannot be disabled.
    let patched = admin.patch(server.api("/users/vic")).json(&json!({"disabled": true})).send().unwrap();
    assert_eq!(patched.status(), 200);
    assert_eq!(vic.get(server.api("/runs")).send().unwrap().status(), 401);
    let (code, text) = status(admin.patch(server.api(&format!("/users/{ADMIN_USER}"))).json(&json!({"role": "member"})).send().unwrap());
    assert_eq!(code, 409, "{text}");
    assert!(text.contains("your own account"), "an administrator never demotes themselves: {text}");
    // Promoting bob to admin lets him cancel ada's runs.
    admin.patch(server.api("/users/bob")).json(&json!({"role": "admin"})).send().unwrap();
    let (_, launched) = launch_as(&server, &ada, &tiny());
    assert_eq!(bob.post(server.api(&format!("/runs/{}/cancel", launched["id"]))).send().unwrap().status(), 200);
}

#[test]
fn an_administrator_resets_a_members_password_but_never_changes_their_own_account() {
    let server = TestServer::start(0);
    let admin = server.client();
    let ada = server.account("ada", "member");
    let old = "ada-password-123";
    let cookie = sign_in(&server, "ada", old);
    assert_eq!(page(&server, &cookie, "/jobs").0, 200);
    // Whether a password is ada's: HTTP Basic makes a token with it (201) or is refused (401).
    let me = |password: &str| {
        Client::new().post(server.api("/tokens")).basic_auth("ada", Some(password)).json(&json!({"name": "check"})).send().unwrap().status().as_u16()
    };
    let reset = |name: &str, body: Value| status(admin.post(server.api(&format!("/users/{name}/password"))).json(&body).send().unwrap());

    // A bad password is refused, saying why, and changes nothing.
    let (code, text) = reset("ada", json!({"password": "short"}));
    assert_eq!(code, 422, "{text}");
    assert!(text.contains("password"), "{text}");
    assert_eq!(me(old), 201);
    // A reset: the new password works, the old one and ada's browser session end, her tokens stay.
    let (code, text) = reset("ada", json!({"password": "ada-new-password-456"}));
    assert_eq!(code, 200, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["sessions_ended"], 1);
    assert_eq!(me("ada-new-password-456"), 201);
    assert_eq!(me(old), 401);
    assert_eq!(page(&server, &cookie, "/jobs").0, 303, "the session ended");
    assert_eq!(ada.get(server.api("/runs")).send().unwrap().status(), 200);
    let (code, text) = reset("ada", json!({"password": "ada-third-password-789", "revoke_tokens": true}));
    assert_eq!(
        (code, serde_json::from_str::<Value>(&text).unwrap()["tokens_revoked"].as_u64()),
        (200, Some(3)),
        "her token and the two the checks made: {text}"
    );
    assert_eq!(ada.get(server.api("/runs")).send().unwrap().status(), 401);
    assert_eq!(reset("nobody", json!({"password": "long-enough-password"})).0, 404);

    // One's own account: no reset (the account page changes it, with the current password),
    // no role change, no disabling; another administrator can.
    let (code, text) = reset(ADMIN_USER, json!({"password": "long-enough-password"}));
    assert_eq!(code, 409, "{text}");
    assert!(text.contains("/account"), "{text}");
    for change in [json!({"disabled": true}), json!({"role": "viewer"})] {
        let (code, text) = status(admin.patch(server.api(&format!("/users/{ADMIN_USER}"))).json(&change).send().unwrap());
        assert_eq!(code, 409, "{text}");
        assert!(text.contains("your own account"), "{text}");
    }
    assert_eq!(me("ada-third-password-789"), 201);
    let bob = server.account("bob", "member");
    assert_eq!(
        bob.post(server.api("/users/ada/password")).json(&json!({"password": "long-enough-password"})).send().unwrap().status(),
        403,
        "members reset nobody's password"
    );
}

#[test]
fn tokens_are_shown_once_revocable_and_separate_from_worker_tokens() {
    let server = TestServer::start(0);
    let admin = server.client();
    let made: Value = admin.post(server.api("/tokens")).json(&json!({"name": "notebook"})).send().unwrap().json().unwrap();
    let secret = made["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("flk_") && secret.len() > 60, "{secret}");
    let listed: Vec<Value> = admin.get(server.api("/tokens")).send().unwrap().json().unwrap();
    assert!(listed.iter().any(|t| t["name"] == "notebook"));
    assert!(!serde_json::to_string(&listed).unwrap().contains(&secret), "the list never shows a secret");
    let notebook = client_with(&secret);
    assert_eq!(notebook.get(server.api("/runs")).send().unwrap().status(), 200);
    assert_eq!(admin.delete(server.api(&format!("/tokens/{}", made["id"]))).send().unwrap().status(), 204);
    let (code, text) = status(notebook.get(server.api("/runs")).send().unwrap());
    assert_eq!(code, 401, "a revoked token is refused");
    assert!(text.contains("unknown or revoked"), "{text}");
    assert_eq!(admin.delete(server.api(&format!("/tokens/{}", made["id"]))).send().unwrap().status(), 404);

    // Worker tokens open the worker protocol only; account tokens do not open it.
    let worker = client_with(WORKER_TOKEN);
    assert_eq!(worker.get(server.api("/runs")).send().unwrap().status(), 401);
    assert_eq!(worker.post(server.api("/runs")).json(&tiny()).send().unwrap().status(), 401);
    assert_eq!(worker.post(server.api("/worker/lease")).json(&json!({"worker": "w"})).send().unwrap().status(), 204, "no job queued");
    assert_eq!(admin.post(server.api("/worker/lease")).json(&json!({"worker": "w"})).send().unwrap().status(), 401);

    // Basic credentials make tokens and nothing else; wrong ones are limited.
    let basic = Client::new();
    assert_eq!(basic.get(server.api("/runs")).basic_auth(ADMIN_USER, Some(ADMIN_PASSWORD)).send().unwrap().status(), 401);
    assert_eq!(basic.post(server.api("/tokens")).basic_auth(ADMIN_USER, Some("wrong")).json(&json!({"name": "x"})).send().unwrap().status(), 401);
    assert_eq!(basic.post(server.api("/tokens")).basic_auth(ADMIN_USER, Some(ADMIN_PASSWORD)).json(&json!({"name": ""})).send().unwrap().status(), 422);
}

#[test]
fn sessions_need_csrf_tokens_to_change_anything() {
    let server = TestServer::start(0);
    server.account("ada", "member");
    let cookie = sign_in(&server, "ada", "ada-password-123");
    let me: Value = browser().get(server.api("/me")).header(COOKIE, &cookie).send().unwrap().json().unwrap();
    assert_eq!((me["name"].as_str(), me["role"].as_str()), (Some("ada"), Some("member")));
    assert!(me.get("csrf").is_none(), "the API does not echo the CSRF token");

    // The JSON API with a session cookie: refused without the token, taken with it.
    let (_, _, html) = page(&server, &cookie, "/launch");
    let csrf = csrf_of(&html);
    let post = |csrf: Option<&str>| {
        let mut request = browser().post(server.api("/runs")).header(COOKIE, &cookie).json(&tiny());
        if let Some(token) = csrf {
            request = request.header("x-csrf-token", token);
        }
        status(request.send().unwrap())
    };
    let (code, text) = post(None);
    assert_eq!(code, 403);
    assert!(text.contains("CSRF"), "{text}");
    assert_eq!(post(Some("0000")).0, 403);
    assert_eq!(post(Some(&csrf)).0, 201);

    // Server functions (forms): the same, through the form's hidden field.
    let (_, _, jobs) = page(&server, &cookie, "/jobs");
    let cancel = form_action(&jobs, "cancel_run");
    let run_id = jobs.split("data-run=\"").nth(1).and_then(|s| s.split('"').next()).unwrap().to_owned();
    let submit =
        |fields: &[(&str, &str)]| browser().post(format!("{}{cancel}", server.url)).header(COOKIE, &cookie).form(fields).send().unwrap().status().as_u16();
    assert_eq!(submit(&[("run_id", &run_id)]), 403, "no csrf field");
    assert_eq!(submit(&[("run_id", &run_id), ("csrf", "forged")]), 403);
    let done = submit(&[("run_id", &run_id), ("csrf", &csrf)]);
    assert!(done == 200 || done == 302 || done == 303, "cancel with the token: {done}");
    let run: Value = server.client().get(server.api(&format!("/runs/{run_id}"))).send().unwrap().json().unwrap();
    assert_eq!(run["status"], "cancelled");

    // A form posted from another site is refused before any session exists.
    let foreign = browser()
        .post(format!("{}/login", server.url))
        .header("origin", "http://evil.example")
        .form(&[("name", "ada"), ("password", "ada-password-123")])
        .send()
        .unwrap();
    assert_eq!(foreign.status(), 403);
    // `next` never leaves the site.
    let away = browser()
        .post(format!("{}/login", server.url))
        .form(&[("name", "ada"), ("password", "ada-password-123"), ("next", "//evil.example/x")])
        .send()
        .unwrap();
    assert_eq!(away.headers()[LOCATION], "/");
    // Nor through what a browser strips or rewrites: a tab, a newline, a backslash (issue 19,
    // item 3: `next=/%09/evil.example` used to come back as the Location).
    for next in ["/\t/evil.example", "/\n/evil.example", "/\\evil.example"] {
        let away = browser().post(format!("{}/login", server.url)).form(&[("name", "ada"), ("password", "ada-password-123"), ("next", next)]).send().unwrap();
        assert_eq!(away.headers()[LOCATION], "/", "{next:?}");
    }
    let home =
        browser().post(format!("{}/login", server.url)).form(&[("name", "ada"), ("password", "ada-password-123"), ("next", "/runs?sort=-id")]).send().unwrap();
    assert_eq!(home.headers()[LOCATION], "/runs?sort=-id", "a path on the site is kept");

    // Signing out ends the session; the cookie then opens nothing.
    let out = browser().post(format!("{}/logout", server.url)).header(COOKIE, &cookie).form(&[("csrf", csrf.as_str())]).send().unwrap();
    assert_eq!(out.status(), 303);
    assert!(out.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(browser().get(server.api("/me")).header(COOKIE, &cookie).send().unwrap().status(), 401);
    assert_eq!(page(&server, &cookie, "/").0, 303);
}

#[test]
fn sign_in_is_rate_limited_and_sessions_end_everywhere() {
    let server = TestServer::start(0);
    server.account("ada", "member");
    let first = sign_in(&server, "ada", "ada-password-123");
    let second = sign_in(&server, "ada", "ada-password-123");
    for attempt in 0..5 {
        let response = browser().post(format!("{}/login", server.url)).form(&[("name", "ada"), ("password", "guess")]).send().unwrap();
        let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
        assert!(location.contains("wrong+user+name+or+password"), "attempt {attempt}: {location}");
    }
    let limited = browser().post(format!("{}/login", server.url)).form(&[("name", "ada"), ("password", "ada-password-123")]).send().unwrap();
    let location = limited.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(location.contains("too+many+failed+sign-ins"), "even the right password waits: {location}");
    assert!(limited.headers().get(SET_COOKIE).is_none());
    // Basic credentials share the limit.
    let basic = Client::new().post(server.api("/tokens")).basic_auth("ada", Some("ada-password-123")).json(&json!({"name": "x"})).send().unwrap();
    assert_eq!(basic.status(), 429);

    // "Sign out everywhere" from one session ends both.
    let (_, _, html) = page(&server, &first, "/account");
    let csrf = csrf_of(&html);
    let ended: Value = browser().post(server.api("/me/sessions/revoke")).header(COOKIE, &first).header("x-csrf-token", csrf).send().unwrap().json().unwrap();
    assert_eq!(ended["sessions_ended"], 2);
    assert_eq!(browser().get(server.api("/me")).header(COOKIE, &second).send().unwrap().status(), 401);
}

/// Every page carries its own policy, with the nonce its scripts carry, also when many are
/// rendered at once (a page sometimes went out with the fallback `default-src 'none'`, and
/// the browser then blocked its script, stylesheet and images).
#[test]
fn pages_rendered_at_once_each_carry_the_policy_of_their_own_nonce() {
    let server = TestServer::start(0);
    let admin = sign_in(&server, ADMIN_USER, ADMIN_PASSWORD);
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|thread| {
                let (server, admin) = (&server, &admin);
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    for round in 0..12 {
                        let path = ["/", "/jobs", "/studies", "/launch", "/account", "/compare"][(thread + round) % 6];
                        let (code, headers, html) = page(server, admin, path);
                        let csp = headers.get(CONTENT_SECURITY_POLICY).and_then(|v| v.to_str().ok()).unwrap_or_default();
                        let nonce = csp.split("'nonce-").nth(1).and_then(|s| s.split('\'').next());
                        match nonce {
                            Some(nonce) if code == 200 && html.contains(&format!("nonce=\"{nonce}\"")) => {}
                            _ => failures.push(format!("{path}: {code}, policy {csp:?}")),
                        }
                    }
                    failures
                })
            })
            .collect();
        handles.into_iter().flat_map(|handle| handle.join().unwrap()).collect()
    });
    assert!(failures.is_empty(), "{} of 96 pages without their policy: {failures:?}", failures.len());
}

#[test]
fn pages_carry_security_headers_and_show_each_role_its_controls() {
    let server = TestServer::start(0);
    server.account("vic", "viewer");
    let admin = sign_in(&server, ADMIN_USER, ADMIN_PASSWORD);
    let (code, headers, html) = page(&server, &admin, "/");
    assert_eq!(code, 200);
    let csp = headers[CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    let nonce = csp.split("'nonce-").nth(1).and_then(|s| s.split('\'').next()).expect("a nonce in the policy").to_owned();
    assert!(html.contains(&format!("nonce=\"{nonce}\"")), "the hydration script carries the policy's nonce");
    for part in ["default-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "'wasm-unsafe-eval'"] {
        assert!(csp.contains(part), "{part} missing from {csp}");
    }
    assert!(!csp.contains("'unsafe-eval'") && !csp.contains("script-src 'self' 'unsafe-inline'"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    let (_, again, _) = page(&server, &admin, "/");
    assert_ne!(again[CONTENT_SECURITY_POLICY], headers[CONTENT_SECURITY_POLICY], "a new nonce per page");
    let json = server.client().get(server.api("/runs")).send().unwrap();
    assert_eq!(json.headers()[CONTENT_SECURITY_POLICY], "default-src 'none'; frame-ancestors 'none'");
    assert!(html.contains("href=\"/launch\"") && html.contains("href=\"/admin/users\""));
    // The browser bundle is public (the sign-in page needs it), per encoding for caches.
    let css = Client::new().get(format!("{}/pkg/forgetlab.css", server.url)).header("accept-encoding", "br").send().unwrap();
    assert_eq!(css.status(), 200);
    assert!(css.headers()["vary"].to_str().unwrap().to_ascii_lowercase().contains("accept-encoding"), "{:?}", css.headers());

    let viewer = sign_in(&server, "vic", "vic-password-123");
    let (_, _, html) = page(&server, &viewer, "/");
    assert!(!html.contains("href=\"/launch\""), "no launch link for viewers");
    assert!(!html.contains("href=\"/admin/users\""));
    let (_, _, launch) = page(&server, &viewer, "/launch");
    assert!(launch.contains("Viewers browse runs but cannot launch") && !launch.contains("name=\"arch\""));
    assert_eq!(page(&server, &viewer, "/admin/users").0, 403);
}

#[test]
fn the_first_administrator_comes_from_a_one_time_setup_url_or_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_forgetlab"))
        .env("FORGETLAB_ADDR", format!("127.0.0.1:{port}"))
        .env("FORGETLAB_DATA_DIR", data.path())
        .env("FORGETLAB_WORKERS", "0")
        .env_remove("FORGETLAB_ADMIN_USER")
        .env_remove("FORGETLAB_ADMIN_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let printed = lines.by_ref().map_while(Result::ok).find(|l| l.contains("/setup?token=")).expect("the setup URL is printed");
    let url = printed.split_whitespace().find(|w| w.contains("/setup?token=")).unwrap().to_owned();
    let token = url.split("token=").nth(1).unwrap().to_owned();
    std::thread::spawn(move || lines.for_each(drop));
    let base = format!("http://127.0.0.1:{port}");
    assert!(url.starts_with(&base), "{url}");
    let setup = |token: &str, password: &str| {
        browser().post(format!("{base}/setup")).form(&[("token", token), ("name", "root"), ("password", password), ("confirm", password)]).send().unwrap()
    };
    let wrong = setup("not-the-token", "a fine password");
    assert!(wrong.headers()[LOCATION].to_str().unwrap().contains("error="));
    let short = setup(&token, "short");
    assert!(short.headers()[LOCATION].to_str().unwrap().contains("at+least+12"), "{:?}", short.headers()[LOCATION]);
    let done = setup(&token, "a fine password");
    assert_eq!(done.headers()[LOCATION], "/");
    assert!(done.headers()[SET_COOKIE].to_str().unwrap().contains("HttpOnly"));
    let again = setup(&token, "another password");
    assert!(again.headers()[LOCATION].to_str().unwrap().contains("error="), "the link works once");
    let _ = child.kill();
    let _ = child.wait();

    // `forgetlab admin create` adds accounts to the same database.
    let created = Command::new(env!("CARGO_BIN_EXE_forgetlab"))
        .args(["admin", "create", "ops", "--role", "member"])
        .env("FORGETLAB_DATA_DIR", data.path())
        .env("FORGETLAB_ADMIN_PASSWORD", "ops password 1")
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let listed = Command::new(env!("CARGO_BIN_EXE_forgetlab")).args(["admin", "list"]).env("FORGETLAB_DATA_DIR", data.path()).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("ops\tmember\tenabled") && listed.contains("root\tadmin\tenabled"), "{listed}");
    let refused = Command::new(env!("CARGO_BIN_EXE_forgetlab"))
        .args(["admin", "create", "x y"])
        .env("FORGETLAB_DATA_DIR", data.path())
        .env("FORGETLAB_ADMIN_PASSWORD", "ops password 1")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("user name"));
    std::thread::sleep(Duration::from_millis(10));
}
