//! The runs table over a real database: filters, sorts, pages and their totals, through the
//! JSON API and the server-rendered page.

mod common;

use common::{TestServer, launch};
use serde_json::{Value, json};

#[test]
fn runs_filter_sort_and_page_on_the_server() {
    // No workers: the runs stay queued, which is all a table needs.
    let server = TestServer::start(0);
    let client = server.client();
    let spec = "classes=3,train_per_class=10,val_per_class=4,size=8,channels=1,seed=1";
    let response = client.post(server.api("/datasets")).json(&json!({"name": "shapes", "format": "synthetic", "path": spec})).send().unwrap();
    assert_eq!(response.status(), 201);
    for i in 0..120u32 {
        let arch = if i % 3 == 0 { "resnet18" } else { "small_cnn" };
        let tags = if i % 2 == 0 { json!(["even", "sweep-1"]) } else { json!("odd, sweep-1") };
        let owner = if i < 30 { "ana" } else { "ben" };
        launch(&server, json!({"dataset": "shapes", "arch": arch, "epochs": 1 + i % 7, "seed": 1000 - i, "tags": tags, "owner": owner}));
    }
    let list = |query: &str| -> (u64, Vec<Value>) {
        let response = client.get(server.api(&format!("/runs?{query}"))).send().unwrap();
        assert_eq!(response.status(), 200, "{query}");
        let total = response.headers()["x-total-count"].to_str().unwrap().parse().unwrap();
        (total, response.json::<Vec<Value>>().unwrap())
    };

    // Pages: the total counts every match, the page holds `limit` of them.
    let (total, page) = list("limit=50");
    assert_eq!((total, page.len()), (120, 50));
    assert_eq!(page[0]["id"], 120, "newest first");
    let (_, last) = list("limit=50&offset=100");
    assert_eq!(last.len(), 20);
    assert_eq!(last[19]["id"], 1);

    // Filters, alone and together.
    let (even, rows) = list("tag=even&limit=1000");
    assert_eq!(even, 60);
    assert!(rows.iter().all(|r| r["tags"] == json!(["even", "sweep-1"])));
    let (odd, rows) = list("tag=odd&limit=1000");
    assert_eq!(odd, 60);
    assert_eq!(rows[0]["tags"], json!(["odd", "sweep-1"]), "a comma-separated string is split and sorted");
    let expected = (0..120).filter(|i| i % 2 == 0 && i % 3 == 0).count() as u64;
    assert_eq!(list("tag=even&arch=resnet18").0, expected);
    assert_eq!(list("owner=ana&tag=odd").0, 15);
    assert_eq!(list("status=queued").0, 120);
    assert_eq!(list("status=succeeded").0, 0);
    assert_eq!(list("tag=").0, 120, "an empty filter is no filter");

    // Dates: every run was created today (UTC).
    let today = list("limit=1").1[0]["created_at"].as_str().unwrap()[..10].to_owned();
    assert_eq!(list(&format!("created_from={today}&created_to={today}")).0, 120);
    assert_eq!(list("created_to=2000-01-01").0, 0);
    let bad = client.get(server.api("/runs?created_from=yesterday")).send().unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().unwrap().contains("created_from must be a day as YYYY-MM-DD"));

    // Sorts, both ways, ties broken by newest first.
    let seeds: Vec<u64> = list("sort=seed&limit=1000").1.iter().map(|r| r["seed"].as_u64().unwrap()).collect();
    assert!(seeds.windows(2).all(|w| w[0] <= w[1]));
    let epochs: Vec<u64> = list("sort=-epochs&limit=1000").1.iter().map(|r| r["epochs"].as_u64().unwrap()).collect();
    assert!(epochs.windows(2).all(|w| w[0] >= w[1]));
    assert_eq!(epochs[0], 7);
    let bad = client.get(server.api("/runs?sort=luck")).send().unwrap();
    assert_eq!(bad.status(), 400);
    // By the last epoch's validation accuracy (runs 1 to 10 get epochs here; the rest have
    // none and come last when sorting down), and by tags.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", server.database().display())).await.unwrap();
        for run in 1..=10i64 {
            for (epoch, accuracy) in [(1, 0.1), (2, f64::from((run * 37 % 10) as i32) / 10.0)] {
                sqlx::query("INSERT INTO epoch_metrics (run_id, epoch, phase, train_loss, train_accuracy, val_loss, val_accuracy, lr, seconds) VALUES (?, ?, 'finetune', 1, 0.5, 1, ?, 0.1, 1)")
                    .bind(run).bind(epoch).bind(accuracy).execute(&pool).await.unwrap();
            }
        }
    });
    let best: Vec<Option<f64>> = list("sort=-val_accuracy&limit=12").1.iter().map(|r| r["final_val_accuracy"].as_f64()).collect();
    let mut expected: Vec<f64> = (1..=10).map(|run: i64| f64::from((run * 37 % 10) as i32) / 10.0).collect();
    expected.sort_by(|a, b| b.total_cmp(a));
    assert_eq!(best[..10].iter().map(|a| a.unwrap()).collect::<Vec<_>>(), expected, "the last epoch's accuracy, best first");
    assert_eq!(best[10..], [None, None]);
    let tagged: Vec<Value> = list("sort=tags&limit=1000").1.iter().map(|r| r["tags"].clone()).collect();
    assert_eq!((tagged[0].clone(), tagged[119].clone()), (json!(["even", "sweep-1"]), json!(["odd", "sweep-1"])));
    let html = client.get(format!("{}/?sort=-val_accuracy", server.url)).send().unwrap().text().unwrap();
    assert!(html.contains("href=\"/?sort=val_accuracy\""), "the column's header sorts it the other way");

    // Bad tags are refused with the field named, and nothing is queued.
    let refused =
        client.post(server.api("/runs")).json(&json!({"dataset": "shapes", "arch": "small_cnn", "epochs": 1, "tags": ["ok", "not ok"]})).send().unwrap();
    assert_eq!(refused.status(), 422);
    let body: Value = refused.json().unwrap();
    assert!(body["errors"]["tags"].as_str().unwrap().contains("\"not ok\""), "{body}");
    assert_eq!(list("").0, 120);

    // The page renders the same page of the same filter, with links to the next one.
    let html = client.get(format!("{}/?tag=even&sort=seed&offset=50", server.url)).send().unwrap().text().unwrap();
    assert!(html.contains("51–60 of 60"), "the pager shows the range");
    assert_eq!(html.matches("<tr data-run=").count(), 10);
    assert!(html.contains("href=\"/?tag=even&amp;sort=seed\""), "links keep the filters");
    assert!(html.contains("rel=\"prev\""));
}

/// Issue 21, item 5: a run has a name (given, or generated from architecture, dataset and
/// seed) and notes; its owner or an administrator changes its name, tags and notes with
/// `PATCH /api/v1/runs/{id}`, a bad field changes nothing, and others are refused.
#[test]
fn runs_have_names_and_notes_that_their_owner_edits() {
    let server = TestServer::start(0);
    let admin = server.client();
    let spec = "classes=3,train_per_class=10,val_per_class=4,size=8,channels=1,seed=1";
    assert_eq!(admin.post(server.api("/datasets")).json(&json!({"name": "shapes", "format": "synthetic", "path": spec})).send().unwrap().status(), 201);
    let ana = server.account("ana", "member");
    let vic = server.account("vic", "viewer");

    let launched: Value = ana
        .post(server.api("/runs"))
        .json(&json!({"dataset": "shapes", "arch": "resnet18", "epochs": 1, "seed": 3, "name": "  baseline  ", "notes": "first try\nlr 0.01"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let named = launched["id"].as_i64().unwrap();
    let unnamed = launch(&server, json!({"dataset": "shapes", "arch": "small_cnn", "epochs": 1, "seed": 7}));
    let get = |id: i64| -> Value { admin.get(server.api(&format!("/runs/{id}"))).send().unwrap().json().unwrap() };
    assert_eq!((get(named)["name"].as_str(), get(named)["notes"].as_str()), (Some("baseline"), Some("first try\nlr 0.01")));
    assert_eq!(get(unnamed)["name"], "small_cnn-shapes-s7", "the default name");
    assert_eq!(get(unnamed)["notes"], "");
    let listed: Vec<Value> = admin.get(server.api("/runs?sort=name")).send().unwrap().json().unwrap();
    assert_eq!(listed.iter().map(|r| r["name"].as_str().unwrap()).collect::<Vec<_>>(), vec!["baseline", "small_cnn-shapes-s7"], "listed and sorted by name");

    let patch = |client: &reqwest::blocking::Client, id: i64, body: Value| client.patch(server.api(&format!("/runs/{id}"))).json(&body).send().unwrap();
    let changed = patch(&ana, named, json!({"name": "baseline, lr 0.01", "tags": "sweep-2, keep"}));
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().unwrap();
    assert_eq!(changed["name"], "baseline, lr 0.01");
    assert_eq!(changed["tags"], json!(["keep", "sweep-2"]));
    assert_eq!(changed["notes"], "first try\nlr 0.01", "a field left out stays");

    // A bad field: 422 naming it, and nothing of the request is stored.
    let refused = patch(&ana, named, json!({"name": "x".repeat(81), "notes": "kept?"}));
    assert_eq!(refused.status(), 422);
    let body: Value = refused.json().unwrap();
    assert!(body["errors"]["name"].as_str().unwrap().contains("1 to 80 characters"), "{body}");
    assert_eq!(get(named)["notes"], "first try\nlr 0.01");
    let unknown = patch(&ana, named, json!({"colour": "red"}));
    assert_eq!(unknown.status(), 422, "unknown fields are refused");
    assert!(unknown.text().unwrap().contains("colour"), "the message names the field");

    // Only the owner or an administrator; viewers change nothing.
    let theirs = patch(&ana, unnamed, json!({"notes": "mine now"}));
    assert_eq!(theirs.status(), 403, "{}", theirs.text().unwrap());
    assert_eq!(patch(&vic, named, json!({"notes": "hi"})).status(), 403);
    assert_eq!(patch(&admin, 9999, json!({"notes": "hi"})).status(), 404);
    // An empty name brings back the default.
    let reset: Value = patch(&admin, named, json!({"name": ""})).json().unwrap();
    assert_eq!(reset["name"], "resnet18-shapes-s3");
}
