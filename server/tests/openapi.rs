//! The OpenAPI document the server publishes (`GET /api/v1/openapi.json`, `server/openapi.json`)
//! against the router (`server/src/routes/mod.rs`, read as text here): every route with each of
//! its methods is in the document's `paths`, and the document names no route or method the
//! router lacks. Also: the document is public, parses as JSON, and every `$ref` in it resolves.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::TestServer;
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The routes of the router's source, `(path, method)`: every `.route("PATH", get(..).post(..))`
/// (all of them are under `/api/v1`, where `startup.rs` nests `api_router`).
fn router_routes(source: &str) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    let mut rest = source;
    while let Some(start) = rest.find(".route(\"") {
        rest = &rest[start + ".route(\"".len()..];
        let end = rest.find('"').expect("a closing quote after the route's path");
        let path = rest[..end].to_owned();
        // The method routers: up to the parenthesis that closes `.route(`.
        let mut depth = 1;
        let mut close = end;
        for (i, c) in rest[end..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                close = end + i;
                break;
            }
        }
        let handlers = &rest[end..close];
        let mut found = false;
        for method in METHODS {
            let mut from = 0;
            while let Some(at) = handlers[from..].find(&format!("{method}(")) {
                let at = from + at;
                let before = handlers[..at].chars().last().unwrap_or(' ');
                if !(before.is_alphanumeric() || before == '_' || before == ':') {
                    routes.insert((path.clone(), method.to_owned()));
                    found = true;
                }
                from = at + method.len();
            }
        }
        assert!(found, "no method router found for {path:?} in {handlers:?}");
        rest = &rest[close..];
    }
    routes
}

fn document_routes(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("the document has `paths`");
    let mut routes = BTreeSet::new();
    for (path, item) in paths {
        for key in item.as_object().expect("a path item is an object").keys() {
            if METHODS.contains(&key.as_str()) {
                routes.insert((path.clone(), key.clone()));
            } else {
                assert!(matches!(key.as_str(), "parameters" | "summary" | "description"), "{path}: unexpected key {key:?}");
            }
        }
    }
    routes
}

/// What one side has and the other lacks, as lines for a failure message.
fn drift(router: &BTreeSet<(String, String)>, document: &BTreeSet<(String, String)>) -> Vec<String> {
    let missing = router.difference(document).map(|(p, m)| format!("{} /api/v1{p}: in the router, not in server/openapi.json", m.to_uppercase()));
    let extra = document.difference(router).map(|(p, m)| format!("{} /api/v1{p}: in server/openapi.json, not in the router", m.to_uppercase()));
    missing.chain(extra).collect()
}

/// Every `$ref` string in the document, with where it was found.
fn references(value: &Value, at: &str, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "$ref" {
                    if let Some(target) = child.as_str() {
                        out.insert(target.to_owned(), at.to_owned());
                    }
                } else {
                    references(child, &format!("{at}/{key}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                references(child, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_document_names_every_route_and_nothing_else() {
    let server = TestServer::start(0);
    // Public: no token, no cookie.
    let response = reqwest::blocking::get(server.api("/openapi.json")).expect("GET /openapi.json");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let text = response.text().expect("the document's text");
    assert_eq!(text, include_str!("../openapi.json"), "the server serves server/openapi.json as it is");
    let document: Value = serde_json::from_str(&text).expect("the document is JSON");
    assert!(document["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "an OpenAPI 3 document");
    assert_eq!(document["servers"][0]["url"], "/api/v1");

    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/routes/mod.rs")).expect("the router's source");
    let router = router_routes(&source);
    assert!(router.len() > 30, "the router's routes were not found in its source: {router:?}");
    assert!(
        router.contains(&("/runs".into(), "post".into()))
            && router.contains(&("/tokens".into(), "get".into()))
            && router.contains(&("/weights/{file}".into(), "put".into()))
    );
    let documented = document_routes(&document);
    let problems = drift(&router, &documented);
    assert!(problems.is_empty(), "server/openapi.json and the router disagree:\n{}", problems.join("\n"));

    // The comparison itself notices a route the document lacks, and one the router lacks.
    let mut more = router.clone();
    more.insert(("/runs/{id}/notes".into(), "post".into()));
    assert_eq!(drift(&more, &documented), vec!["POST /api/v1/runs/{id}/notes: in the router, not in server/openapi.json"]);
    let mut fewer = router.clone();
    fewer.remove(&("/runs".into(), "post".into()));
    assert_eq!(drift(&fewer, &documented), vec!["POST /api/v1/runs: in server/openapi.json, not in the router"]);

    // Each operation has an id and answers; each `{param}` of a path is a path parameter.
    for (path, item) in document["paths"].as_object().unwrap() {
        let names: BTreeSet<&str> = path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        for (method, operation) in item.as_object().unwrap() {
            assert!(operation["operationId"].is_string(), "{method} {path}: no operationId");
            assert!(operation["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}: no responses");
            let params: BTreeSet<&str> = operation["parameters"]
                .as_array()
                .map(|ps| ps.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect())
                .unwrap_or_default();
            assert_eq!(params, names, "{method} {path}: path parameters");
        }
    }

    // Every reference points at something in the document.
    let mut refs = BTreeMap::new();
    references(&document, "", &mut refs);
    assert!(!refs.is_empty());
    for (target, at) in refs {
        let pointer = target.strip_prefix('#').unwrap_or_else(|| panic!("{at}: {target} is not a local reference"));
        assert!(document.pointer(pointer).is_some(), "{at}: {target} points at nothing");
    }

    // The bodies the API takes have their real field names (a sample; the contract of docs/design.md).
    let schemas = &document["components"]["schemas"];
    for (schema, fields) in [
        (
            "RunRequest",
            &[
                "dataset",
                "arch",
                "epochs",
                "warmup_epochs",
                "warmup_backbone",
                "batch_size",
                "lr",
                "optimizer",
                "seed",
                "train_subset",
                "image_size",
                "preprocess",
                "measure",
                "weights",
                "device",
            ][..],
        ),
        ("TokenRequest", &["name"]),
        ("NewUser", &["name", "password", "role"]),
        ("UserChange", &["role", "disabled"]),
        ("RegisterDataset", &["name", "path", "format", "options"]),
        ("StudyRequest", &["name", "preset", "base", "archs", "seeds", "arms"]),
    ] {
        let properties = schemas[schema]["properties"].as_object().unwrap_or_else(|| panic!("no schema {schema}"));
        for field in fields {
            assert!(properties.contains_key(*field), "{schema} lacks {field}");
        }
    }
}
