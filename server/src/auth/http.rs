//! Authentication on the wire: the middleware in front of every route, and the sign-in,
//! sign-out and setup forms. The account API (`/api/v1/me`, `/tokens`, `/users`) and the
//! `Caller` extractor are `routes::accounts`.
//!
//! Every request but the public ones ([`is_public`]) needs an account: a session cookie (pages,
//! the browser's API calls) or `Authorization: Bearer flk_...` (scripts). `Basic` credentials
//! are taken only by `POST /api/v1/tokens`, to make a first token. A request that changes
//! state with a session cookie must carry the session's CSRF token, in the `X-CSRF-Token`
//! header or a `csrf` form field; viewers may change only their own account; administrators
//! alone reach `/admin`, `/sf/admin` and `/api/v1/users`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Form;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use protocol::Failure;
use protocol::auth::{Identity, Role};
use serde::Deserialize;

use super::{Auth, Credential, SESSION_DAYS};
use crate::routes::Refusal;

pub const SESSION_COOKIE: &str = "forgetlab_session";
/// The session cookie's name over HTTPS: the `__Host-` prefix makes browsers take it only
/// with `Secure`, `Path=/` and no `Domain`, so no other host can set or shadow it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-forgetlab_session";
/// Sent over HTTPS: browsers then refuse plain HTTP to the site for a year.
const HSTS: &str = "max-age=31536000";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field that carries the CSRF token in forms posted without JavaScript.
pub const CSRF_FIELD: &str = "csrf";
/// The largest form body read to find its CSRF field.
const FORM_LIMIT: usize = 1024 * 1024;

/// Routes anyone may reach: the sign-in and setup pages, the browser bundle, the health check,
/// the API's OpenAPI document (it reveals no data), and the worker protocol (which checks its
/// own worker tokens).
fn is_public(path: &str) -> bool {
    matches!(path, "/login" | "/setup" | "/favicon.ico" | "/favicon.svg" | "/api/v1/health" | "/api/v1/openapi.json")
        || path.starts_with("/pkg/")
        || path.starts_with("/api/v1/worker/")
}

fn admin_only(path: &str) -> bool {
    path == "/admin"
        || path.starts_with("/admin/")
        || path.starts_with("/sf/admin")
        || path.starts_with("/api/v1/users")
        || path == "/healthz"
        || path == "/metrics"
}

/// What a viewer may change: their own account (tokens, password, sessions) and signing out.
fn own_account(path: &str) -> bool {
    path == "/logout" || path.starts_with("/sf/account") || path.starts_with("/api/v1/tokens") || path.starts_with("/api/v1/me")
}

fn is_machine(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/sf/")
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

enum Credentials<'a> {
    None,
    Bearer(&'a str),
    Basic(String, String),
    Session(&'a str),
}

fn credentials(headers: &HeaderMap) -> Result<Credentials<'_>, Failure> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| Failure::unauthorized("the Authorization header is not text"))?;
        if let Some(token) = value.strip_prefix("Bearer ") {
            return Ok(Credentials::Bearer(token.trim()));
        }
        if let Some(encoded) = value.strip_prefix("Basic ") {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok().and_then(|b| String::from_utf8(b).ok());
            let (name, password) = decoded
                .as_deref()
                .and_then(|d| d.split_once(':'))
                .ok_or_else(|| Failure::unauthorized("the Basic credentials are not base64 of name:password"))?;
            return Ok(Credentials::Basic(name.to_owned(), password.to_owned()));
        }
        return Err(Failure::unauthorized("the Authorization header must be `Bearer <token>` (or `Basic` for POST /api/v1/tokens)"));
    }
    Ok(session_of(headers).map_or(Credentials::None, Credentials::Session))
}

/// The session cookie's value: the `__Host-` one first.
fn session_of(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SECURE_SESSION_COOKIE).or_else(|| cookie(headers, SESSION_COOKIE))
}

fn client_ip(auth: &Auth, request: &Request) -> Option<std::net::IpAddr> {
    request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| auth.client_address().of(c.0.ip(), request.headers()))
}

/// Whether a browser's `Origin` (when sent) is this site: refuses cross-site form posts to the
/// forms that come before a session exists (sign-in, setup).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    origin.split_once("://").is_some_and(|(_, rest)| rest == host)
}

/// The middleware: authenticates, applies the role rules and CSRF, and puts the [`Identity`]
/// into the request for handlers, pages and server functions.
/// Whether an answer is an HTML page (by its Content-Type).
pub fn is_html(headers: &axum::http::HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("text/html"))
}

pub async fn authenticate(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let target = request.uri().path_and_query().map_or_else(|| path.clone(), |p| p.to_string());
    let unsafe_method = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let https = secure(request.headers());
    let mut response = if is_public(&path) {
        if unsafe_method && !same_origin(request.headers()) {
            return Refusal(Failure::forbidden("a form from another site was refused")).into_response();
        }
        next.run(request).await
    } else {
        guarded(&auth, request, next, &path, &target, unsafe_method).await
    };
    let headers = response.headers_mut();
    if https {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
    // A page carries its session's CSRF token: no cache keeps it (issue 19, item 13).
    if is_html(headers) && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn guarded(auth: &Auth, request: Request, next: Next, path: &str, target: &str, unsafe_method: bool) -> Response {
    match identify(auth, request, path, unsafe_method).await {
        Ok(request) => next.run(request).await,
        Err(failure) if failure.status == 401 && !is_machine(path) => Redirect::to(&format!("/login?next={}", encode(target))).into_response(),
        Err(failure) => {
            let status = failure.status;
            let mut response = Refusal(failure).into_response();
            if status == 401 {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"forgetlab\""));
            }
            response
        }
    }
}

async fn identify(auth: &Auth, mut request: Request, path: &str, unsafe_method: bool) -> Result<Request, Failure> {
    let (who, credential) =
        match credentials(request.headers())? {
            Credentials::None => (None, None),
            Credentials::Bearer(token) => (
                Some(auth.token(token).await?.ok_or_else(|| {
                    Failure::unauthorized("the API token is unknown or revoked; create one on your account page or with POST /api/v1/tokens")
                })?),
                Some(Credential::Token(token.to_owned())),
            ),
            Credentials::Basic(name, password) => {
                if !(path == "/api/v1/tokens" && request.method() == Method::POST) {
                    return Err(Failure::unauthorized(
                        "Basic credentials are taken only by POST /api/v1/tokens; send the token it returns as `Authorization: Bearer <token>`",
                    ));
                }
                (Some(auth.sign_in(&name, &password, client_ip(auth, &request)).await?), None)
            }
            Credentials::Session(cookie) => (auth.session(cookie).await?, Some(Credential::Session(cookie.to_owned()))),
        };
    let who = who.ok_or_else(|| Failure::unauthorized("sign in first: open /login in a browser, or send `Authorization: Bearer <token>`"))?;
    if admin_only(path) && !who.is_admin() {
        return Err(Failure::forbidden(format!("{} is for administrators; {} is a {}", path, who.name, who.role.as_str())));
    }
    if unsafe_method {
        if who.role == Role::Viewer && !own_account(path) {
            return Err(Failure::forbidden(format!(
                "{} is a viewer: viewers browse but cannot launch or change runs; ask an administrator for the member role",
                who.name
            )));
        }
        if let Some(expected) = who.csrf.clone() {
            request = check_csrf(request, &expected).await?;
        }
    }
    request.extensions_mut().insert(who);
    if let Some(credential) = credential {
        request.extensions_mut().insert(credential);
    }
    Ok(request)
}

/// Checks the session's CSRF token in the header or, for a posted form, its `csrf` field;
/// gives the request back whole.
async fn check_csrf(request: Request, expected: &str) -> Result<Request, Failure> {
    let refused =
        || Failure::forbidden("this change came without the page's CSRF token (X-CSRF-Token header or csrf form field); reload the page and try again");
    if let Some(sent) = request.headers().get(CSRF_HEADER) {
        return if crate::queue::same_digest(sent.to_str().unwrap_or_default(), expected) { Ok(request) } else { Err(refused()) };
    }
    let is_form = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(refused());
    }
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, FORM_LIMIT).await.map_err(|_| Failure::bad_request("the form is larger than 1 MiB"))?;
    let sent = form_urlencoded::parse(&bytes).find(|(key, _)| key == CSRF_FIELD).map(|(_, value)| value.into_owned());
    if !sent.is_some_and(|sent| crate::queue::same_digest(&sent, expected)) {
        return Err(refused());
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Only a path on this site may be returned to after signing in: it starts with one `/`, and
/// holds no backslash, whitespace or control character. Browsers drop tabs and newlines from
/// a URL and read `\` as `/`, so `/%09/evil.example` (a tab) or `/\evil.example` would leave the site
/// as `//evil.example` (issue 19, item 3).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.chars().any(|c| c == '\\' || c.is_whitespace() || c.is_control()) => n.to_owned(),
        _ => "/".to_owned(),
    }
}

/// Whether the site is served over HTTPS: the proxy in front says so (`X-Forwarded-Proto`;
/// believed from anyone, since it only makes cookies stricter), or FORGETLAB_SECURE_COOKIES.
fn secure(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").is_some_and(|p| p == "https") || std::env::var("FORGETLAB_SECURE_COOKIES").is_ok_and(|v| v == "1" || v == "true")
}

/// The session cookie: `__Host-` prefixed and `Secure` over HTTPS.
fn session_cookie(value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let (name, secure) = if secure { (SECURE_SESSION_COOKIE, "; Secure") } else { (SESSION_COOKIE, "") };
    HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")).expect("a cookie header")
}

async fn signed_in(auth: &Auth, who: &Identity, headers: &HeaderMap, next: &str) -> Result<Response, Failure> {
    let cookie = auth.open_session(who).await?;
    let mut response = Redirect::to(next).into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&cookie, SESSION_DAYS * 86_400, secure(headers)));
    Ok(response)
}

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
    next: Option<String>,
}

/// `POST /login`: a session cookie and back to `next`; or back to the form with the reason.
pub async fn login(State(auth): State<Arc<Auth>>, ConnectInfo(client): ConnectInfo<SocketAddr>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let next = safe_next(form.next.as_deref());
    let client = auth.client_address().of(client.ip(), &headers);
    let result = match auth.sign_in(form.name.trim(), &form.password, Some(client)).await {
        Ok(who) => signed_in(&auth, &who, &headers, &next).await,
        Err(failure) => Err(failure),
    };
    result.unwrap_or_else(|failure| Redirect::to(&format!("/login?error={}&next={}", encode(&failure.body.message), encode(&next))).into_response())
}

/// `POST /logout`: ends this session.
pub async fn logout(State(auth): State<Arc<Auth>>, headers: HeaderMap) -> Response {
    if let Some(cookie) = session_of(&headers) {
        if let Err(failure) = auth.close_session(cookie).await {
            return Refusal(failure).into_response();
        }
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie("", 0, secure(&headers)));
    response
}

#[derive(Deserialize)]
pub struct SetupForm {
    token: String,
    name: String,
    password: String,
    confirm: String,
}

/// `POST /setup`: the first administrator, with the token of the printed setup URL.
pub async fn setup(State(auth): State<Arc<Auth>>, headers: HeaderMap, Form(form): Form<SetupForm>) -> Response {
    let result = if form.password != form.confirm {
        Err(Failure::bad_request("the two passwords differ"))
    } else {
        match auth.complete_setup(&form.token, form.name.trim(), &form.password).await {
            Ok(who) => signed_in(&auth, &who, &headers, "/").await,
            Err(failure) => Err(failure),
        }
    };
    result.unwrap_or_else(|failure| {
        let message = match failure.body.errors.0.iter().next() {
            Some((field, message)) => format!("{field}: {message}"),
            None => failure.body.message,
        };
        Redirect::to(&format!("/setup?token={}&error={}", encode(&form.token), encode(&message))).into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/runs/3?x=1")), "/runs/3?x=1");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "runs",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "/\u{7f}/x",
            "/a\\b",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn route_classes() {
        assert!(is_public("/pkg/forgetlab.wasm") && is_public("/api/v1/worker/lease") && is_public("/login") && is_public("/api/v1/openapi.json"));
        assert!(!is_public("/api/v1/runs") && !is_public("/") && !is_public("/sf/list_runs"));
        assert!(admin_only("/api/v1/users/ada") && admin_only("/admin/users") && !admin_only("/administrivia"));
        assert!(admin_only("/metrics") && admin_only("/healthz") && !admin_only("/api/v1/health"));
        assert!(own_account("/api/v1/tokens/3") && !own_account("/api/v1/runs"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; forgetlab_session=abc; b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
