//! A fuzzing run against the JSON API of a real server (issue 7): valid requests for every
//! route, mutated at random (fields dropped, values of the wrong type or size, unknown
//! fields, broken JSON, hostile path segments and query strings), signed in as an
//! administrator so every route's parser is reached. Every answer must be a deliberate one:
//! no 5xx, a JSON error with a message for every refusal, and the server alive at the end.
//!
//! `FORGETLAB_FUZZ_CASES` sets the number of cases (default 3,000); `FORGETLAB_FUZZ_SEED` the
//! seed (default 7), so a failure can be replayed.

mod common;

use common::TestServer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Values of every JSON type and of awkward sizes.
fn hostile_value(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..16) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(0),
        4 => json!(i64::MAX),
        5 => json!(u64::MAX),
        6 => json!(1e308),
        7 => json!(-0.0),
        8 => json!("NaN"),
        9 => json!(""),
        10 => json!("x".repeat(rng.gen_range(1_000..20_000))),
        11 => json!("../../etc/passwd"),
        12 => json!("é\u{0}\u{202e}🙂"),
        13 => json!([1, "a", null, {"k": []}]),
        14 => json!({"nested": {"deeper": [[[]]]}}),
        _ => json!(rng.gen_range(-1_000_000i64..1_000_000)),
    }
}

/// Path segments and query values a parser must refuse or handle. (`..`, `%2e%2e`, `%2E.` are left
/// out: the HTTP client resolves both before sending, so they never reach the API;
/// `confinement.rs` covers what they would reach.)
fn hostile_segment(rng: &mut StdRng) -> String {
    const SEGMENTS: [&str; 13] = ["-1", "0", "99999999999999999999", "abc", "%00", "%2e%2e%2f", "a%2fb", "1.5", "%F0%9F%99%82", "1;DROP TABLE runs", "%20", "records.exe", "%FF%FE"];
    SEGMENTS[rng.gen_range(0..SEGMENTS.len())].to_owned()
}

/// A valid body, then mutated (as bytes: a cut may fall inside a UTF-8 character).
fn mutate(rng: &mut StdRng, body: &Value) -> Vec<u8> {
    let mut value = body.clone();
    if let Value::Object(map) = &mut value {
        for _ in 0..rng.gen_range(1..4) {
            let keys: Vec<String> = map.keys().cloned().collect();
            match rng.gen_range(0..4) {
                0 if !keys.is_empty() => {
                    map.remove(&keys[rng.gen_range(0..keys.len())]);
                }
                1 if !keys.is_empty() => {
                    map.insert(keys[rng.gen_range(0..keys.len())].clone(), hostile_value(rng));
                }
                2 => {
                    map.insert(format!("unknown_{}", rng.gen_range(0..100)), hostile_value(rng));
                }
                _ => value_in_place(rng, map),
            }
        }
    }
    let text = value.to_string().into_bytes();
    match rng.gen_range(0..10) {
        0 => text[..rng.gen_range(0..text.len().max(1))].to_vec(),
        1 => (0..rng.gen_range(0..64)).map(|_| rng.r#gen::<u8>()).collect(),
        2 => hostile_value(rng).to_string().into_bytes(),
        _ => text,
    }
}

fn value_in_place(rng: &mut StdRng, map: &mut Map<String, Value>) {
    let keys: Vec<String> = map.keys().cloned().collect();
    if keys.is_empty() {
        return;
    }
    let key = &keys[rng.gen_range(0..keys.len())];
    if let Some(Value::String(text)) = map.get_mut(key) {
        text.push_str(&hostile_segment(rng));
    }
}

#[test]
fn the_json_api_answers_every_mutated_request_deliberately() {
    let cases = setting("FORGETLAB_FUZZ_CASES", 3_000);
    let seed = setting("FORGETLAB_FUZZ_SEED", 7);
    let server = TestServer::start(0);
    let client = server.client();
    // Something to point at: a queued run and a study.
    let run = common::launch(&server, json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 1, "train_subset": 8}));
    let study: Value = client.post(server.api("/studies")).json(&json!({"preset": "architecture-dependent-forgetting-small", "seeds": [1]})).send().unwrap().json().unwrap();
    let study = study["id"].as_i64().unwrap();

    let posts: Vec<(&str, String, Value)> = vec![
        ("POST", "/runs".into(), json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 2, "warmup_epochs": 1, "batch_size": 32, "lr": 0.01, "seed": 1, "train_subset": 64, "tags": ["a"], "priority": 1, "sampling": {"kind": "random", "budget": 0.5}})),
        ("POST", "/studies".into(), json!({"preset": "architecture-dependent-forgetting-small", "name": "fuzz", "seeds": [1, 2], "archs": ["small_cnn"], "arms": ["full", {"kind": "random", "budget": 0.5}]})),
        ("POST", format!("/studies/{study}/seeds"), json!({"seeds": [9]})),
        ("POST", "/datasets".into(), json!({"name": "fz", "path": "/usr/share/datasets/fashion-mnist", "format": "idx", "options": {}})),
        ("POST", "/tokens".into(), json!({"name": "fuzz"})),
        ("POST", "/users".into(), json!({"name": "fuzzer", "password": "long enough password", "role": "viewer"})),
        ("PATCH", "/users/fuzzer".into(), json!({"role": "member", "disabled": false})),
        ("POST", "/worker/lease".into(), json!({"worker": "w", "job_id": 1})),
        ("PUT", "/worker/jobs/1/epochs/1".into(), json!({"attempt": 1, "metrics": {}})),
    ];
    let gets = [
        format!("/runs?status=queued&sort=-created_at&limit=5&offset=0&dataset=fashion-mnist&tag=a"),
        format!("/runs/{run}"),
        format!("/runs/{run}/samples?sort=-forgetting_events&limit=10&min_events=1&class=3"),
        format!("/runs/{run}/log?tail=5"),
        format!("/runs/{run}/datamap"),
        format!("/runs/{run}/classes"),
        format!("/runs/{run}/shown"),
        format!("/runs/{run}/records.parquet"),
        format!("/runs/{run}/samples/train-0"),
        format!("/compare?runs={run},{run}&q=0.1&score=forgetting_events"),
        format!("/compare/samples.csv?runs={run}"),
        format!("/studies/{study}"),
        "/datasets/fashion-mnist/train/0.png".to_owned(),
    ];

    let mut rng = StdRng::seed_from_u64(seed);
    let mut findings = Vec::new();
    let mut answered = std::collections::BTreeMap::<u16, u64>::new();
    for case in 0..cases {
        let (method, path, body) = if rng.gen_bool(0.6) {
            let (method, path, body) = &posts[rng.gen_range(0..posts.len())];
            let path = if rng.gen_bool(0.2) {
                let mut parts: Vec<String> = path.split('/').map(str::to_owned).collect();
                let at = rng.gen_range(1..parts.len());
                parts[at] = hostile_segment(&mut rng);
                parts.join("/")
            } else {
                path.clone()
            };
            (*method, path, Some(mutate(&mut rng, body)))
        } else {
            let base = &gets[rng.gen_range(0..gets.len())];
            let path = match rng.gen_range(0..3) {
                0 => base.clone(),
                1 => {
                    let (route, _) = base.split_once('?').unwrap_or((base, ""));
                    let key = ["sort", "limit", "offset", "runs", "q", "score", "tail", "status", "min_events", "class", "intersect", "created_from"][rng.gen_range(0..12)];
                    format!("{route}?{key}={}", hostile_segment(&mut rng))
                }
                _ => {
                    let mut parts: Vec<String> = base.split('/').map(str::to_owned).collect();
                    let at = rng.gen_range(1..parts.len());
                    parts[at] = hostile_segment(&mut rng);
                    parts.join("/")
                }
            };
            ("GET", path, None)
        };
        let url = server.api(&path);
        let request = match method {
            "GET" => client.get(&url),
            "PUT" => client.put(&url),
            "PATCH" => client.patch(&url),
            _ => client.post(&url),
        };
        let request = match &body {
            Some(text) => request.header("content-type", "application/json").body(text.clone()),
            None => request,
        };
        let response = request.send().unwrap_or_else(|e| panic!("case {case}: {method} {path}: no answer: {e}"));
        let status = response.status().as_u16();
        *answered.entry(status).or_default() += 1;
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let text = response.text().unwrap_or_default();
        let problem = if status >= 500 {
            Some(format!("{status}"))
        } else if status >= 400 && !(content_type.starts_with("application/json") && serde_json::from_str::<Value>(&text).is_ok_and(|v| v["message"].is_string())) {
            Some(format!("{status} without a JSON message ({content_type})"))
        } else {
            None
        };
        if let Some(problem) = problem {
            let sent = body.as_deref().map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned()).unwrap_or_default();
            findings.push(format!("case {case}: {method} {path} {sent}: {problem}: {}", text.chars().take(300).collect::<String>()));
        }
    }
    let health = client.get(server.api("/health")).send().unwrap();
    assert_eq!(health.status(), 200, "the server is alive after the run");
    eprintln!("fuzz: {cases} cases (seed {seed}); answers by status: {answered:?}; {} finding(s)", findings.len());
    assert!(findings.is_empty(), "{} finding(s):\n{}", findings.len(), findings.iter().take(20).cloned().collect::<Vec<_>>().join("\n"));
}
