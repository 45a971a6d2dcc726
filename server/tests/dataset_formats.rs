//! Datasets in formats other than IDX, registered through the API and trained on by a real
//! worker: a generated synthetic set, and an ImageFolder of PNG files of mixed sizes.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{ADMIN_PASSWORD, ADMIN_USER, TestServer, launch, page, sign_in, wait_for_run};
use reqwest::blocking::Client;
use serde_json::{Value, json};

/// A `size x size` grey PNG: class 0 bright on top, class 1 bright at the bottom.
fn write_png(path: &Path, size: u32, label: u32, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let pixels: Vec<u8> = (0..size * size)
        .map(|i| {
            let top = i / size < size / 2;
            let base: u32 = if top == (label == 0) { 200 } else { 30 };
            (base + (i * 7 + seed * 13) % 20) as u8
        })
        .collect();
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), size, size);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header().unwrap().write_image_data(&pixels).unwrap();
}

fn register(client: &Client, server: &TestServer, body: Value) -> reqwest::blocking::Response {
    client.post(server.api("/datasets")).json(&body).send().expect("POST /datasets")
}

#[test]
fn synthetic_and_image_folder_datasets_register_and_train() {
    let server = TestServer::start(1);
    let client = server.client();

    let spec = "classes=3,train_per_class=40,val_per_class=10,size=16,channels=1,seed=5";
    let response = register(&client, &server, json!({"name": "synthetic-3", "format": "synthetic", "path": spec}));
    assert_eq!(response.status(), 201, "{}", response.text().unwrap());
    let info: Value = response.json().unwrap();
    assert_eq!((info["num_classes"].as_u64(), info["train_size"].as_u64(), info["val_size"].as_u64()), (Some(3), Some(120), Some(30)));

    let root = server.data_dir.path().join("datasets/tiny-folder");
    for label in 0..2 {
        for i in 0..12 {
            let size = if i % 2 == 0 { 20 } else { 28 };
            write_png(&root.join(format!("train/class{label}/img{i}.png")), size, label, i);
        }
        for i in 0..4 {
            write_png(&root.join(format!("val/class{label}/img{i}.png")), 24, label, 100 + i);
        }
    }
    let response = register(&client, &server, json!({"name": "tiny-folder", "format": "image_folder", "path": root}));
    assert_eq!(response.status(), 201, "{}", response.text().unwrap());
    let info: Value = response.json().unwrap();
    assert_eq!(info["class_names"], json!(["class0", "class1"]));
    assert_eq!((info["train_size"].as_u64(), info["image_height"].as_u64(), info["channels"].as_u64()), (Some(24), Some(0), Some(1)));

    // Mixed sizes: the run must say which size to train at.
    let refused = client.post(server.api("/runs")).json(&json!({"dataset": "tiny-folder", "arch": "small_cnn", "epochs": 1})).send().unwrap();
    assert_eq!(refused.status(), 422);
    let body: Value = refused.json().unwrap();
    assert!(body["errors"]["image_size"].as_str().unwrap().contains("differ in size"), "{body}");

    // Unknown formats and paths outside the data roots are refused with what to fix.
    let response = register(&client, &server, json!({"name": "x", "format": "tfrecord", "path": root}));
    assert_eq!(response.status(), 400);
    assert!(response.text().unwrap().contains("tfrecord"));
    let response = register(&client, &server, json!({"name": "x", "format": "image_folder", "path": "/etc"}));
    assert_eq!(response.status(), 400);
    assert!(response.text().unwrap().contains("outside the data roots"));

    let synthetic = launch(&server, json!({"dataset": "synthetic-3", "arch": "small_cnn", "epochs": 2, "batch_size": 16, "lr": 0.05, "device": "cpu"}));
    let folder = launch(&server, json!({"dataset": "tiny-folder", "arch": "small_cnn", "epochs": 2, "batch_size": 8, "image_size": 16, "device": "cpu"}));
    for (id, samples) in [(synthetic, 120), (folder, 24)] {
        let run = wait_for_run(&server, id, Duration::from_secs(300));
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["sample_count"], samples);
    }
    // The decoded datasets were cached by the worker, one file per split and size.
    let cached = std::fs::read_dir(server.data_dir.path().join("cache")).unwrap().count();
    assert_eq!(cached, 4, "train and val of two datasets");

    // Thumbnails of mixed-size images come at one size.
    let png = client.get(server.api("/datasets/tiny-folder/train/3.png")).send().unwrap();
    assert_eq!(png.status(), 200);
    let bytes = png.bytes().unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let reader = decoder.read_info().unwrap();
    assert_eq!((reader.info().width, reader.info().height), (96, 96));
}

#[test]
fn an_unreadable_image_is_named_or_skipped_as_the_dataset_says() {
    let server = TestServer::start(1);
    let client = server.client();
    let root = server.data_dir.path().join("datasets/with-a-bad-file");
    for label in 0..2 {
        for i in 0..6 {
            write_png(&root.join(format!("class{label}/img{i}.png")), 16, label, i);
        }
    }
    let bad = root.join("class1/broken.png");
    std::fs::write(&bad, b"not a png at all").unwrap();

    // The default policy refuses, naming the file.
    let response = register(&client, &server, json!({"name": "strict", "format": "image_folder", "path": root}));
    assert_eq!(response.status(), 400);
    let message = response.text().unwrap();
    assert!(message.contains("broken.png"), "{message}");

    // Options are checked like any input.
    let response = register(&client, &server, json!({"name": "x", "format": "image_folder", "path": root, "options": {"bad_images": "ignore"}}));
    assert_eq!(response.status(), 400);
    assert!(response.text().unwrap().contains("bad_images must be fail or skip"));

    // Skip: the other 12 images load, split 10 % per class for validation (1 of 6 each).
    let response = register(
        &client,
        &server,
        json!({"name": "lenient", "format": "image_folder", "path": root, "options": {"bad_images": "skip", "val_fraction": 0.2, "split_seed": 3}}),
    );
    assert_eq!(response.status(), 201, "{}", response.text().unwrap());
    let info: Value = response.json().unwrap();
    assert_eq!(info["options"], json!({"val_fraction": 0.2, "split_seed": 3, "bad_images": "skip"}));
    let listed: Value = client.get(server.api("/datasets")).send().unwrap().json().unwrap();
    let stored = listed.as_array().unwrap().iter().find(|d| d["name"] == "lenient").unwrap();
    assert_eq!(stored["options"]["bad_images"], "skip", "the options are stored with the dataset");
    let (train, val) = (info["train_size"].as_u64().unwrap(), info["val_size"].as_u64().unwrap());
    assert_eq!(train + val, 12);

    let id = launch(&server, json!({"dataset": "lenient", "arch": "small_cnn", "epochs": 1, "batch_size": 4, "device": "cpu"}));
    let run = wait_for_run(&server, id, Duration::from_secs(300));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["sample_count"].as_u64(), Some(train), "the worker loads with the dataset's options");
}

/// Issue 22, item 6: an ImageFolder of several scans per patient, registered with a grouping
/// rule, splits by patient; the counts per side are served and stored; the worker trains on
/// the same split; a rule that does not parse or a layout that leaks a patient is a 400.
#[test]
fn a_grouping_rule_splits_by_patient_and_the_worker_trains_on_that_split() {
    let server = TestServer::start(1);
    let client = server.client();
    let root = server.data_dir.path().join("datasets/patients");
    for patient in 0..12u32 {
        for scan in 0..3 {
            write_png(&root.join(format!("class{}/P{patient:02}_{scan}.png", patient % 2)), 16, patient % 2, patient * 3 + scan);
        }
    }
    let options = json!({"val_fraction": 0.25, "split_seed": 1, "bad_images": "fail", "group_pattern": "(P\\d+)_"});
    let response = register(&client, &server, json!({"name": "by-patient", "format": "image_folder", "path": root, "options": options}));
    assert_eq!(response.status(), 201, "{}", response.text().unwrap());
    let info: Value = response.json().unwrap();
    assert_eq!(info["options"], options, "the rule is stored with the dataset");
    let groups = &info["groups"];
    let (train_groups, val_groups) = (groups["train"].as_u64().unwrap(), groups["val"].as_u64().unwrap());
    assert_eq!((train_groups + val_groups, groups["test"].as_u64()), (12, Some(0)), "{info}");
    // Whole patients of 3 scans each: the sizes are multiples of 3 that match the counts.
    assert_eq!(info["train_size"].as_u64(), Some(3 * train_groups), "{info}");
    assert_eq!(info["val_size"].as_u64(), Some(3 * val_groups), "{info}");
    let listed: Value = client.get(server.api("/datasets")).send().unwrap().json().unwrap();
    let stored = listed.as_array().unwrap().iter().find(|d| d["name"] == "by-patient").unwrap();
    assert_eq!(stored["groups"], info["groups"], "the counts are stored");
    let ungrouped = listed.as_array().unwrap().iter().find(|d| d["name"] != "by-patient");
    assert!(ungrouped.is_none_or(|d| d.get("groups").is_none()), "an ungrouped dataset has no counts: {listed}");

    let id = launch(&server, json!({"dataset": "by-patient", "arch": "small_cnn", "epochs": 1, "batch_size": 4, "device": "cpu"}));
    let run = wait_for_run(&server, id, Duration::from_secs(300));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["sample_count"].as_u64(), info["train_size"].as_u64(), "the worker loads the grouped split");

    // The datasets page says how many patients each side holds.
    let (cookie, _, _) = sign_in(&server, ADMIN_USER, ADMIN_PASSWORD, false);
    let (status, _, html) = page(&server, &cookie, "/datasets");
    assert_eq!(status, 200);
    let shown = format!("{train_groups} train / {val_groups} val");
    assert!(html.contains(&shown), "the page shows {shown:?}: {html}");

    let response = register(&client, &server, json!({"name": "bad-rule", "format": "image_folder", "path": root, "options": {"group_pattern": "(P\\d+"}}));
    assert_eq!(response.status(), 400);
    assert!(response.text().unwrap().contains("not a regular expression"));

    // Authors' folders that put one patient in train/ and val/ are refused, naming it.
    let leaky = server.data_dir.path().join("datasets/leaky");
    write_png(&leaky.join("train/class0/P01_0.png"), 16, 0, 1);
    write_png(&leaky.join("train/class1/P02_0.png"), 16, 1, 2);
    write_png(&leaky.join("val/class0/P01_1.png"), 16, 0, 3);
    let response = register(&client, &server, json!({"name": "leaky", "format": "image_folder", "path": leaky, "options": {"group_pattern": "(P\\d+)_"}}));
    assert_eq!(response.status(), 400);
    let message = response.text().unwrap();
    assert!(message.contains("group \\\"P01\\\" is on two sides") || message.contains("group \"P01\" is on two sides"), "{message}");
    let listed: Value = client.get(server.api("/datasets")).send().unwrap().json().unwrap();
    assert!(listed.as_array().unwrap().iter().all(|d| d["name"] != "leaky"), "nothing is stored for a refused dataset");
}

/// A sample grid asks for dozens of thumbnails at once: the split is decoded once for all of
/// them (each request used to decode the whole split while the cache was empty).
#[test]
fn thumbnails_asked_for_at_once_decode_their_split_once() {
    let server = TestServer::start(0);
    let client = server.client();
    let spec = "classes=4,train_per_class=400,val_per_class=50,size=28,channels=1,seed=3";
    assert_eq!(register(&client, &server, json!({"name": "grid", "format": "synthetic", "path": spec})).status(), 201);
    let decoded = || -> u64 {
        let metrics = client.get(format!("{}/metrics", server.url)).send().unwrap().text().unwrap();
        let line =
            metrics.lines().find(|l| l.starts_with("forgetlab_thumbnail_splits_decoded_total ")).unwrap_or_else(|| panic!("no decode counter in {metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let before = decoded();
    std::thread::scope(|scope| {
        for i in 0..24 {
            let (client, server) = (&client, &server);
            scope.spawn(move || {
                let png = client.get(server.api(&format!("/datasets/grid/train/{}.png", i * 50))).send().unwrap();
                assert_eq!(png.status(), 200);
            });
        }
    });
    assert_eq!(decoded() - before, 1, "24 thumbnails at once, one decoding of the split");
    assert_eq!(client.get(server.api("/datasets/grid/val/3.png")).send().unwrap().status(), 200);
    assert_eq!(decoded() - before, 2, "the other split once more");
}
