//! Bad input to `POST /api/v1/runs` gets a JSON answer with one message per field, and
//! nothing is queued; a page of a run or study that does not exist is a 404 that says so.

mod common;

use common::{ADMIN_PASSWORD, ADMIN_USER, TestServer, page, require_fashion_mnist, sign_in};
use serde_json::{Value, json};

#[test]
fn invalid_run_specs_are_refused_field_by_field_and_nothing_is_queued() {
    require_fashion_mnist();
    let server = TestServer::start(0);
    let client = server.client();
    let cases = [
        (json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 0}), "epochs", "must be a whole number from 1 to 1000, got 0"),
        (json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 1, "lr": -0.1}), "lr", "greater than 0"),
        (json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 1, "lr": 0}), "lr", "got 0"),
        (json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 1, "train_subset": 60001}), "train_subset", "larger than fashion-mnist's 60000"),
        (json!({"dataset": "imagenet", "arch": "small_cnn", "epochs": 1}), "dataset", "unknown dataset \"imagenet\""),
        (json!({"dataset": "fashion-mnist", "arch": "vgg19", "epochs": 1}), "arch", "unknown value \"vgg19\""),
        (json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 1, "measure": "always"}), "measure", "in_batch, full_pass"),
        (json!({"arch": "small_cnn"}), "dataset", "is required"),
    ];
    for (body, field, expected) in cases {
        let response = client.post(server.api("/runs")).json(&body).send().unwrap();
        assert_eq!(response.status(), 422, "{body}");
        let error: Value = response.json().unwrap();
        let message = error["errors"][field].as_str().unwrap_or_else(|| panic!("no message for {field} in {error}"));
        assert!(message.contains(expected), "{field}: {message:?} should contain {expected:?}");
    }

    let malformed = client.post(server.api("/runs")).header("content-type", "application/json").body("{\"dataset\": ").send().unwrap();
    assert_eq!(malformed.status(), 400);
    assert!(malformed.json::<Value>().unwrap()["message"].as_str().unwrap().contains("request body was refused"));

    let unknown =
        client.post(server.api("/runs")).json(&json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 1, "learning_rate": 0.1})).send().unwrap();
    assert_eq!(unknown.status(), 422);
    assert!(unknown.json::<Value>().unwrap()["message"].as_str().unwrap().contains("unknown field `learning_rate`"));

    let not_json = client.post(server.api("/runs")).body("epochs=1").send().unwrap();
    assert_eq!(not_json.status(), 415, "a body that is not JSON says so");

    let runs: Vec<Value> = client.get(server.api("/runs")).send().unwrap().json().unwrap();
    assert!(runs.is_empty(), "nothing was queued: {runs:?}");
    assert_eq!(client.get(server.api("/runs/abc")).send().unwrap().status(), 400);
    assert_eq!(client.get(server.api("/runs/999")).send().unwrap().status(), 404);
    assert_eq!(client.get(server.api("/runs?sort=password")).send().unwrap().status(), 400);
}

/// Issue 21, item 14: pages of what does not exist answer 404 with the server's message and a
/// way back (they answered 200 with "error running server function").
#[test]
fn pages_of_missing_runs_and_studies_are_404s_that_say_so() {
    let server = TestServer::start(0);
    let (cookie, ..) = sign_in(&server, ADMIN_USER, ADMIN_PASSWORD, false);
    for (path, says) in [("/runs/999", "no run #999"), ("/runs/999/samples", "no run #999"), ("/studies/999", "999")] {
        let (status, _, html) = page(&server, &cookie, path);
        assert_eq!(status, 404, "{path}");
        assert!(html.contains(says) && html.contains("Back to the runs"), "{path}: {html}");
        assert!(!html.contains("error running server function"), "{path}: the transport's words");
    }
    assert_eq!(page(&server, &cookie, "/studies").0, 200, "a page that exists");
}
