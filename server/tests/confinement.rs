//! Datasets and weights come only from the configured data roots, and no URL reaches a file
//! outside the site: `..`, absolute paths, symlinks pointing out, and percent-encoded tricks
//! are all refused (issue 7).

mod common;

use std::os::unix::fs::symlink;

use common::{FASHION_MNIST, TestServer};
use serde_json::{Value, json};

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

/// A 2x2 greyscale PNG.
fn tiny_png() -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, 2, 2);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.write_header().unwrap().write_image_data(&[0, 64, 128, 255]).unwrap();
    out
}

/// Issue 19, item 5: confinement holds for every file a dataset opens, not only its registered
/// folder: a link inside an image folder, CUB list entries that climb out, and a folder
/// swapped for a link after registration are all refused, and no thumbnail shows what lies
/// outside the roots.
#[test]
fn every_file_a_dataset_opens_is_confined_not_only_its_folder() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(0, &[("FORGETLAB_DATA_ROOTS", &root.path().display().to_string())]);
    let client = server.client();
    std::fs::write(outside.path().join("secret.png"), tiny_png()).unwrap();
    let register = |name: &str, format: &str, path: &std::path::Path| {
        let response = client.post(server.api("/datasets")).json(&json!({"name": name, "format": format, "path": path.display().to_string()})).send().unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };

    // An image folder whose class folder holds a link to an image outside the roots.
    let folder = root.path().join("linked");
    for class in ["a", "b"] {
        std::fs::create_dir_all(folder.join("train").join(class)).unwrap();
        std::fs::create_dir_all(folder.join("val").join(class)).unwrap();
        std::fs::write(folder.join("train").join(class).join("0.png"), tiny_png()).unwrap();
        std::fs::write(folder.join("val").join(class).join("0.png"), tiny_png()).unwrap();
    }
    symlink(outside.path().join("secret.png"), folder.join("train/a/1.png")).unwrap();
    let (status, text) = register("linked", "image_folder", &folder);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("secret.png") || text.contains("1.png"), "the message names the file: {text}");

    // CUB lists naming files outside the images folder, absolute or with `..`.
    for (name, entry) in [("cub-dots", "../../x.png"), ("cub-absolute", "/etc/x.png")] {
        let cub = root.path().join(name);
        std::fs::create_dir_all(cub.join("images/001.A")).unwrap();
        std::fs::write(cub.join("images/001.A/0.png"), tiny_png()).unwrap();
        std::fs::write(cub.join("images.txt"), format!("1 001.A/0.png\n2 {entry}\n")).unwrap();
        std::fs::write(cub.join("image_class_labels.txt"), "1 1\n2 1\n").unwrap();
        std::fs::write(cub.join("train_test_split.txt"), "1 1\n2 0\n").unwrap();
        std::fs::write(cub.join("classes.txt"), "1 001.A\n").unwrap();
        let (status, text) = register(name, "cub", &cub);
        assert_eq!(status, 400, "{entry}: {text}");
        assert!(text.contains("images.txt"), "the message names the list: {text}");
    }

    // A folder registered inside the root, then swapped for a link to the outside: its
    // thumbnails are refused, never served from there.
    let swapped = root.path().join("swapped");
    std::fs::create_dir_all(&swapped).unwrap();
    for class in ["a", "b"] {
        std::fs::create_dir_all(swapped.join(class)).unwrap();
        for i in 0..4 {
            std::fs::write(swapped.join(class).join(format!("{i}.png")), tiny_png()).unwrap();
        }
    }
    let (status, text) = register("swapped", "image_folder", &swapped);
    assert_eq!(status, 201, "{text}");
    for class in ["a", "b"] {
        std::fs::create_dir_all(outside.path().join("copy").join(class)).unwrap();
        for i in 0..4 {
            std::fs::write(outside.path().join("copy").join(class).join(format!("{i}.png")), tiny_png()).unwrap();
        }
    }
    std::fs::rename(&swapped, root.path().join("gone")).unwrap();
    symlink(outside.path().join("copy"), &swapped).unwrap();
    let response = client.get(server.api("/datasets/swapped/train/0.png")).send().unwrap();
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    assert_eq!(status, 400, "a swapped folder is not read: {text}");
    assert!(text.contains("data roots") || text.contains("outside"), "{text}");
}
