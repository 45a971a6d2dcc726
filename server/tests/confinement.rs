//! Datasets and weights come only from the configured data roots, and no URL reaches a file
//! outside the site: `..`, absolute paths, symlinks pointing out, and percent-encoded tricks
//! are all refused (issue 7).

mod common;

use std::os::unix::fs::symlink;

use common::{TestServer, FASHION_MNIST};
use serde_json::{json, Value};

#[test]
fn paths_outside_the_data_roots_are_refused_however_they_are_spelled() {
    common::require_fashion_mnist();
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().display().to_string();
    let server = TestServer::start_with(0, &[("FORGETLAB_DATA_ROOTS", &root_path), ("FORGETLAB_MAX_UPLOAD_MB", "1")]);
    let client = server.client();

    // Inside the root: a symlink out of it, a real dataset copied in, a weights file.
    let inside = root.path().join("fashion");
    std::fs::create_dir(&inside).unwrap();
    for file in std::fs::read_dir(FASHION_MNIST).unwrap().flatten() {
        std::fs::copy(file.path(), inside.join(file.file_name())).unwrap();
    }
    symlink(FASHION_MNIST, root.path().join("escape")).unwrap();
    symlink("/etc/passwd", root.path().join("passwd.safetensors")).unwrap();
    std::fs::write(root.path().join("ok.safetensors"), b"not really weights").unwrap();

    let register = |path: &str| {
        let response = client.post(server.api("/datasets")).json(&json!({"name": "probe", "path": path, "format": "idx"})).send().unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    for path in [
        format!("{root_path}/../../usr/share/datasets/fashion-mnist"),
        FASHION_MNIST.to_owned(),
        "/etc".to_owned(),
        format!("{root_path}/escape"),
        format!("{root_path}/%2e%2e/%2e%2e/etc"),
        "fashion/../../../etc".to_owned(),
    ] {
        let (status, text) = register(&path);
        assert_eq!(status, 400, "{path}: {text}");
        assert!(text.contains("data roots"), "{path}: the message names the data roots: {text}");
    }
    // The same folder, reached inside the root, registers.
    let (status, text) = register(&format!("{root_path}/fashion"));
    assert_eq!(status, 201, "{text}");

    let launch = |weights: &str| {
        let response = client
            .post(server.api("/runs"))
            .json(&json!({"dataset": "probe", "arch": "small_cnn", "epochs": 1, "train_subset": 8, "weights": weights}))
            .send()
            .unwrap();
        (response.status().as_u16(), response.json::<Value>().unwrap())
    };
    for weights in ["../../../etc/passwd", "/etc/passwd", "passwd.safetensors", "%2e%2e/%2e%2e/etc/passwd", "fashion/../../x.safetensors"] {
        let (status, body) = launch(weights);
        assert_eq!(status, 422, "{weights}: {body}");
        assert!(body["errors"]["weights"].is_string(), "{weights}: a message on the weights field: {body}");
    }
    let (status, body) = launch("ok.safetensors");
    assert_eq!(status, 201, "a file inside the root is taken: {body}");

    // Uploaded weights: bounded, checked, never overwriting, then launchable by name.
    let mut tensors = 2u64.to_le_bytes().to_vec();
    tensors.extend(b"{}");
    let put = |file: &str, body: Vec<u8>, who: &reqwest::blocking::Client| {
        let response = who.put(server.api(&format!("/weights/{file}"))).body(body).send().unwrap();
        (response.status().as_u16(), response.json::<Value>().unwrap_or(Value::Null))
    };
    let (status, body) = put("tiny.safetensors", tensors.clone(), &client);
    assert_eq!((status, body["path"].as_str()), (201, Some("weights/tiny.safetensors")), "{body}");
    assert_eq!(put("tiny.safetensors", tensors.clone(), &client).0, 409, "never overwritten");
    let (status, body) = put("big.safetensors", vec![0u8; 1024 * 1024 + 1], &client);
    assert_eq!(status, 413, "{body}");
    assert!(body["message"].as_str().unwrap().contains("FORGETLAB_MAX_UPLOAD_MB"), "{body}");
    let (status, body) = put("junk.safetensors", b"not a tensor file".to_vec(), &client);
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("not a safetensors file"), "{body}");
    for name in ["..%2fescape.safetensors", ".hidden.safetensors", "model.bin"] {
        assert_eq!(put(name, tensors.clone(), &client).0, 400, "{name}");
    }
    let viewer = server.account("vera", "viewer");
    assert_eq!(put("mine.safetensors", tensors.clone(), &viewer).0, 403);
    let listed: Vec<Value> = client.get(server.api("/weights")).send().unwrap().json().unwrap();
    assert_eq!(listed, vec![json!({"path": "weights/tiny.safetensors", "bytes": 10})], "only the accepted upload is kept");
    let (status, body) = launch("weights/tiny.safetensors");
    assert_eq!(status, 201, "uploaded weights are launchable: {body}");

    // No URL reaches files outside the site's own.
    for path in ["/pkg/../Cargo.toml", "/pkg/..%2f..%2fCargo.toml", "/pkg/%2e%2e/%2e%2e/Cargo.toml", "/api/v1/datasets/probe/train/..%2f..%2fetc%2fpasswd"] {
        let response = client.get(format!("{}{path}", server.url)).send().unwrap();
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        assert!(!text.contains("[workspace]") && !text.contains("root:x:0"), "{path} leaked a file ({status})");
        assert_ne!(status, 200, "{path}");
    }
    // Nothing was stored by the refused requests: one dataset, one run.
    let datasets: Vec<Value> = client.get(server.api("/datasets")).send().unwrap().json().unwrap();
    assert_eq!(datasets.iter().filter(|d| d["name"] == "probe").count(), 1);
    let runs: Vec<Value> = client.get(server.api("/runs")).send().unwrap().json().unwrap();
    assert_eq!(runs.len(), 2);
}
