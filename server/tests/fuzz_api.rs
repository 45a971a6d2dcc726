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
use serde_json::{Map, Value, json};

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
    const SEGMENTS: [&str; 13] =
        ["-1", "0", "99999999999999999999", "abc", "%00", "%2e%2e%2f", "a%2fb", "1.5", "%F0%9F%99%82", "1;DROP TABLE runs", "%20", "records.exe", "%FF%FE"];
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
    let study: Value =
        client.post(server.api("/studies")).json(&json!({"preset": "architecture-dependent-forgetting-small", "seeds": [1]})).send().unwrap().json().unwrap();
    let study = study["id"].as_i64().unwrap();

    let posts: Vec<(&str, String, Value)> = vec![
        (
            "POST",
            "/runs".into(),
            json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 2, "warmup_epochs": 1, "batch_size": 32, "lr": 0.01, "seed": 1, "train_subset": 64, "tags": ["a"], "priority": 1, "sampling": {"kind": "random", "budget": 0.5}}),
        ),
        (
            "POST",
            "/studies".into(),
            json!({"preset": "architecture-dependent-forgetting-small", "name": "fuzz", "seeds": [1, 2], "archs": ["small_cnn"], "arms": ["full", {"kind": "random", "budget": 0.5}]}),
        ),
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
                    let key = ["sort", "limit", "offset", "runs", "q", "score", "tail", "status", "min_events", "class", "intersect", "created_from"]
                        [rng.gen_range(0..12)];
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
        } else if status >= 400
            && !(content_type.starts_with("application/json") && serde_json::from_str::<Value>(&text).is_ok_and(|v| v["message"].is_string()))
        {
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

/// `bytes` with a few mutations a broken or hostile file has: flipped bits, overwritten
/// bytes in the header, a length field inflated, a cut.
fn mutate_file(rng: &mut StdRng, bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for _ in 0..rng.gen_range(1..4) {
        if out.is_empty() {
            break;
        }
        let header = out.len().min(64);
        match rng.gen_range(0..5) {
            0 => {
                let at = rng.gen_range(0..out.len());
                out[at] ^= 1 << rng.gen_range(0..8);
            }
            1 => {
                let at = rng.gen_range(0..header);
                out[at] = rng.r#gen();
            }
            2 if out.len() >= 8 => {
                // A big-endian u32 (IDX dims) or little-endian u64 (safetensors, npy) made huge.
                let at = rng.gen_range(0..header.saturating_sub(4).max(1));
                out[at..at + 4].copy_from_slice(&[0x7f, 0xff, 0xff, rng.r#gen()]);
            }
            3 => out.truncate(rng.gen_range(0..out.len())),
            _ => {
                let at = rng.gen_range(0..out.len());
                let cut: Vec<u8> = out[at..].to_vec();
                out.extend(cut);
            }
        }
    }
    out
}

fn png_of(pixels: &[u8], side: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header().unwrap().write_image_data(pixels).unwrap();
    out
}

/// Issue 19, item 4: dataset files (IDX, ImageFolder PNGs) and weights files (safetensors) a
/// member can put under a data root, built from real Fashion-MNIST images and then mutated,
/// are registered, thumbnailed and uploaded through the API. Every answer must be deliberate
/// (no 5xx) and the server must stay up: a reader that panics or aborts on a bad header
/// fails this. `FORGETLAB_FILE_FUZZ_CASES` sets the number of cases (default 600).
#[test]
fn mutated_dataset_and_weights_files_are_answered_deliberately() {
    common::require_fashion_mnist();
    let cases = setting("FORGETLAB_FILE_FUZZ_CASES", 600);
    let seed = setting("FORGETLAB_FUZZ_SEED", 7);
    let mut rng = StdRng::seed_from_u64(seed);
    let root = tempfile::tempdir().unwrap();
    let root_text = root.path().display().to_string();
    let server = TestServer::start_with(0, &[("FORGETLAB_DATA_ROOTS", &root_text)]);
    let client = server.client();

    // 40 real images and labels from Fashion-MNIST's t10k files.
    let gunzip = |name: &str| {
        let file = std::fs::File::open(format!("{}/{name}", common::FASHION_MNIST)).unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(file), &mut bytes).unwrap();
        bytes
    };
    let images = gunzip("t10k-images-idx3-ubyte.gz");
    let labels = gunzip("t10k-labels-idx1-ubyte.gz");
    let (pixels, labels) = (&images[16..16 + 40 * 784], &labels[8..8 + 40]);
    let idx_files = [
        ("train-images-idx3-ubyte", datasets::encode_idx(&[32, 28, 28], &pixels[..32 * 784])),
        ("train-labels-idx1-ubyte", datasets::encode_idx(&[32], &labels[..32])),
        ("t10k-images-idx3-ubyte", datasets::encode_idx(&[8, 28, 28], &pixels[32 * 784..])),
        ("t10k-labels-idx1-ubyte", datasets::encode_idx(&[8], &labels[32..])),
    ];
    let pngs: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| (format!("{}/{}/{i}.png", if i < 8 { "train" } else { "val" }, ["bag", "boot"][i % 2]), png_of(&pixels[i * 784..(i + 1) * 784], 28)))
        .collect();
    let mut tensors = serde_json::to_vec(&json!({"w": {"dtype": "U8", "shape": [4, 4], "data_offsets": [0, 16]}, "__metadata__": {"format": "pt"}})).unwrap();
    let mut weights = (tensors.len() as u64).to_le_bytes().to_vec();
    weights.append(&mut tensors);
    weights.extend([3u8; 16]);

    let mut answered = std::collections::BTreeMap::<u16, usize>::new();
    let mut findings = Vec::new();
    let mut check = |what: String, response: reqwest::blocking::Response, answered: &mut std::collections::BTreeMap<u16, usize>| -> u16 {
        let status = response.status().as_u16();
        *answered.entry(status).or_default() += 1;
        let body = response.bytes().unwrap_or_default();
        let has_message = serde_json::from_slice::<Value>(&body).ok().is_some_and(|v| v["message"].is_string());
        if status >= 500 || ((400..500).contains(&status) && !has_message) {
            findings.push(format!("{what}: {status} {}", String::from_utf8_lossy(&body[..body.len().min(300)])));
        }
        status
    };
    let started = std::time::Instant::now();
    for case in 0..cases {
        let dir = root.path().join(format!("case{case}"));
        let (format, name) = match case % 3 {
            0 => {
                let broken = rng.gen_range(0..idx_files.len());
                for (i, (file, bytes)) in idx_files.iter().enumerate() {
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(dir.join(file), if i == broken { mutate_file(&mut rng, bytes) } else { bytes.clone() }).unwrap();
                }
                ("idx", format!("idx{case}"))
            }
            1 => {
                let broken = rng.gen_range(0..pngs.len());
                for (i, (file, bytes)) in pngs.iter().enumerate() {
                    std::fs::create_dir_all(dir.join(file).parent().unwrap()).unwrap();
                    std::fs::write(dir.join(file), if i == broken { mutate_file(&mut rng, bytes) } else { bytes.clone() }).unwrap();
                }
                ("image_folder", format!("folder{case}"))
            }
            _ => {
                let response = client.put(server.api(&format!("/weights/w{case}.safetensors"))).body(mutate_file(&mut rng, &weights)).send().unwrap();
                check(format!("case {case}: PUT weights"), response, &mut answered);
                continue;
            }
        };
        let response = client
            .post(server.api("/datasets"))
            .json(&json!({"name": name, "format": format, "path": dir.display().to_string(), "options": {"bad_images": "skip"}}))
            .send()
            .unwrap();
        if check(format!("case {case}: register {format}"), response, &mut answered) == 201 {
            for split in ["train", "val"] {
                let response = client.get(server.api(&format!("/datasets/{name}/{split}/0.png"))).send().unwrap();
                check(format!("case {case}: thumbnail {split}"), response, &mut answered);
            }
        }
    }
    assert_eq!(client.get(server.api("/health")).send().unwrap().status(), 200, "the server is alive after the run");
    eprintln!(
        "file fuzz: {cases} cases (seed {seed}) in {:.1} s; answers by status: {answered:?}; {} finding(s)",
        started.elapsed().as_secs_f64(),
        findings.len()
    );
    assert!(findings.is_empty(), "{} undeliberate answers:\n{}", findings.len(), findings.join("\n"));
    // The unmutated files are accepted: the run reached the readers, not only the checks.
    assert!(answered.get(&201).copied().unwrap_or(0) > 0, "{answered:?}");
}
