//! Training schedules end to end: a real server and worker train a run, then runs pruned by
//! its forgetting scores and scheduled by Leitner queues; every sample is recorded every epoch,
//! the samples each epoch showed are stored with the run, and a schedule whose source run
//! cannot drive it is refused at launch with a message for `sampling.source_run`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{ADMIN_PASSWORD, ADMIN_USER, TestServer, launch, page, sign_in, wait_for_run};
use reqwest::blocking::Client;
use serde_json::{Value, json};

fn register(client: &Client, server: &TestServer, name: &str, spec: &str) {
    let response = client.post(server.api("/datasets")).json(&json!({"name": name, "format": "synthetic", "path": spec})).send().unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().unwrap());
}

fn get(client: &Client, server: &TestServer, path: &str) -> Value {
    let response = client.get(server.api(path)).send().unwrap();
    assert!(response.status().is_success(), "GET {path}: {}", response.status());
    response.json().unwrap()
}

/// Shown sample indices of each fine-tuning epoch, after checking the warmup epoch showed all.
fn shown_sets(shown: &Value, samples: u64, budget: usize) -> Vec<BTreeSet<u64>> {
    let epochs = shown["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 3, "{shown}");
    assert_eq!((epochs[0]["every"].as_bool(), epochs[0]["count"].as_u64()), (Some(true), Some(samples)), "the head warmup shows every sample");
    epochs[1..]
        .iter()
        .map(|epoch| {
            assert_eq!(epoch["every"], false);
            assert_eq!(epoch["count"].as_u64(), Some(budget as u64));
            let set: BTreeSet<u64> = epoch["samples"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap()).collect();
            assert_eq!(set.len(), budget, "epoch {}", epoch["epoch"]);
            assert!(set.iter().all(|&i| i < samples));
            set
        })
        .collect()
}

#[test]
fn scheduled_runs_record_every_sample_and_store_what_each_epoch_showed() {
    let server = TestServer::start(1);
    let client = server.client();
    register(&client, &server, "synthetic-3", "classes=3,train_per_class=40,val_per_class=10,size=16,channels=1,seed=5");
    register(&client, &server, "other", "classes=2,train_per_class=10,val_per_class=2,size=16,channels=1,seed=6");
    let base = json!({"dataset": "synthetic-3", "arch": "small_cnn", "epochs": 2, "warmup_epochs": 1, "batch_size": 16, "lr": 0.05, "device": "cpu"});
    let with = |sampling: Value| {
        let mut spec = base.clone();
        spec["sampling"] = sampling;
        spec
    };
    let source = launch(&server, base.clone());
    let mut second_seed = base.clone();
    second_seed["seed"] = json!(2);
    let second = launch(&server, second_seed);
    let other = launch(&server, json!({"dataset": "other", "arch": "small_cnn", "epochs": 1, "device": "cpu"}));

    // Refused at launch while the source run is not finished, and for an unknown run.
    let prune = |run: i64| with(json!({"kind": "prune", "budget": 0.25, "source_run": run, "score": "forgetting_events", "keep": "top"}));
    for (run, expected) in [(source, format!("run #{source} is ")), (999, "there is no run #999".to_owned())] {
        let response = client.post(server.api("/runs")).json(&prune(run)).send().unwrap();
        assert_eq!(response.status(), 422);
        let body: Value = response.json().unwrap();
        let message = body["errors"]["sampling.source_run"].as_str().unwrap_or_default();
        assert!(message.contains(&expected) && message.contains("forgetting_events"), "{body}");
    }
    for id in [source, second, other] {
        assert_eq!(wait_for_run(&server, id, Duration::from_secs(300))["status"], "succeeded");
    }
    let response = client.post(server.api("/runs")).json(&prune(other)).send().unwrap();
    assert_eq!(response.status(), 422);
    assert!(response.text().unwrap().contains(&format!("run #{other} trained on other, not synthetic-3")));

    let pruned = launch(&server, prune(source));
    let leitner = launch(&server, with(json!({"kind": "leitner", "budget": 0.25, "decks": 3})));
    // Two seeds combined (issue 17): EL2N averaged over the seeds, as Paul et al. score.
    let by_el2n = launch(&server, with(json!({"kind": "prune", "budget": 0.25, "source_run": [source, second], "score": "el2n", "keep": "top"})));
    let source_shown = get(&client, &server, &format!("/runs/{source}/shown"));
    assert!(source_shown["epochs"].as_array().unwrap().iter().all(|e| e["every"] == true && e["count"] == 120), "{source_shown}");
    assert_eq!(source_shown["sampling"], json!({"budget": 1.0, "kind": "full"}));

    // round(0.25 * 120) = 30 samples per fine-tuning epoch.
    let mut sets = Vec::new();
    for id in [pruned, leitner, by_el2n] {
        let run = wait_for_run(&server, id, Duration::from_secs(300));
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["spec"]["measure"], "full_pass", "a subset schedule measures in a full pass");
        assert_eq!(run["sample_count"], 120);
        let shown = get(&client, &server, &format!("/runs/{id}/shown"));
        assert_eq!(shown["sampling"], run["spec"]["sampling"]);
        sets.push(shown_sets(&shown, 120, 30));
        // records.csv says the same in its `shown` column: every sample in the warmup epoch,
        // the schedule's 30 afterwards.
        let csv = client.get(server.api(&format!("/runs/{id}/records.csv"))).send().unwrap().text().unwrap();
        let mut lines = csv.lines();
        assert!(lines.next().unwrap().ends_with(",el2n,shown"));
        let mut from_csv = vec![BTreeSet::new(); 3];
        for line in lines {
            let fields: Vec<&str> = line.split(',').collect();
            if fields[12] == "1" {
                from_csv[fields[1].parse::<usize>().unwrap() - 1].insert(fields[4].parse::<u64>().unwrap());
            }
        }
        assert_eq!(from_csv[0].len(), 120, "the head warmup trains on every sample");
        assert_eq!(&from_csv[1..], &sets.last().unwrap()[..]);
        // Every sample measured every epoch, and summarised.
        let records = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", server.database().display())).await.unwrap();
            server::records::read(&pool, id).await.unwrap()
        });
        assert_eq!(records.epochs, vec![1, 2, 3]);
        assert!(records.columns.iter().all(|c| c.correct.len() == 120 && c.loss.iter().all(|l| l.is_finite())));
        assert_eq!(get(&client, &server, &format!("/runs/{id}/samples?limit=1"))["total"], 120);
    }

    // Pruning keeps the same 30 samples each epoch: the highest forgetting scores of the
    // source run (same dataset and subset, so the same sample order).
    let pruned_sets = &sets[0];
    assert_eq!(pruned_sets[0], pruned_sets[1]);
    let stats = get(&client, &server, &format!("/runs/{source}/samples?limit=1000&sort=sample_index"));
    // Never-learned samples rank as the most forgotten (the `max` policy).
    let score: Vec<u64> = stats["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| if s["never_learned"] == true { u64::MAX } else { s["forgetting_events"].as_u64().unwrap() })
        .collect();
    let lowest_kept = pruned_sets[0].iter().map(|&i| score[i as usize]).min().unwrap();
    let highest_left = (0..120u64).filter(|i| !pruned_sets[0].contains(i)).map(|i| score[i as usize]).max().unwrap();
    assert!(lowest_kept >= highest_left, "kept scores down to {lowest_kept}, left one of {highest_left}");

    // The seed-combined pruning keeps the 30 highest mean EL2N of the two source runs (EL2N
    // at epoch 2, 10 % into the fine-tuning window; continuous, so no ties). A never-learned
    // sample ranks at the forgotten end (the `max` policy: an EL2N of +infinity), as every
    // ranking does (dynamics::Score::ranked_value).
    let el2n_of = |run: i64| -> Vec<f64> {
        let stats = get(&client, &server, &format!("/runs/{run}/samples?limit=1000&sort=sample_index"));
        stats["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| if s["never_learned"] == true { f64::INFINITY } else { s["el2n"].as_f64().expect("every sample has an EL2N") })
            .collect()
    };
    assert_eq!(get(&client, &server, &format!("/runs/{source}"))["analysis"]["el2n_epoch"], 2);
    let (a, b) = (el2n_of(source), el2n_of(second));
    for run in [source, second] {
        let stats = get(&client, &server, &format!("/runs/{run}/samples?limit=1000&sort=sample_index"));
        for i in [24usize, 26, 59, 113] {
            let s = &stats["samples"][i];
            eprintln!("DEBUG run {run} sample {i}: el2n {} never {} key {}", s["el2n"], s["never_learned"], s["sample_key"]);
        }
    }
    let spec: Value = get(&client, &server, &format!("/runs/{source}"));
    eprintln!("DEBUG spec {}", spec["spec"]);
    let mut order: Vec<usize> = (0..120).collect();
    order.sort_by(|&i, &j| ((b[j] + a[j]) / 2.0).total_cmp(&((a[i] + b[i]) / 2.0)));
    let expected: BTreeSet<u64> = order[..30].iter().map(|&i| i as u64).collect();
    assert_eq!(sets[2][0], expected, "the top 30 by EL2N averaged over seeds");
    assert_eq!(sets[2][1], expected, "pruning keeps the same samples every epoch");
    assert_ne!(a, b, "two seeds, two sets of scores");

    // Leitner, fine-tuning epoch 2: decks 0 and 1 are both due; the samples right at their
    // review moved to deck 1 and wait behind deck 0 (the 90 not shown yet, and any wrong).
    assert_ne!(sets[1][0], sets[1][1], "Leitner moves on to samples not yet reviewed");
}

/// RbF as Amiri et al. run it (issue 22 item 3): on due samples only, an epoch trains on the
/// samples still due (not yet recalled, or whose delay ran out), so later epochs train on
/// fewer; the server stores each epoch's count and the run and its study report serve the
/// data fraction per epoch.
#[test]
fn rbf_on_due_samples_only_trains_on_fewer_and_reports_the_data_fraction() {
    let server = TestServer::start(1);
    let client = server.client();
    register(&client, &server, "synthetic-3", "classes=3,train_per_class=40,val_per_class=10,size=16,channels=1,seed=5");
    // The Laplace kernel: with cross-entropy, -ln p = loss, so its fit at delay 1 is tau = s
    // and a recalled sample waits floor(ln(1/nu) / loss) epochs (two or more below loss 0.35).
    let sampling = json!({"kind": "rbf", "budget": 1, "nu": 0.5, "kernel": "laplace", "due_only": true});
    let id = launch(
        &server,
        json!({"dataset": "synthetic-3", "arch": "small_cnn", "epochs": 4, "warmup_epochs": 1, "batch_size": 16, "lr": 0.05, "device": "cpu", "sampling": sampling}),
    );
    let run = wait_for_run(&server, id, Duration::from_secs(300));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["spec"]["measure"], "full_pass", "an RbF arm on due samples measures every sample");
    let shown = get(&client, &server, &format!("/runs/{id}/shown"));
    let counts: Vec<u64> = shown["epochs"].as_array().unwrap()[1..].iter().map(|e| e["count"].as_u64().unwrap()).collect();
    assert_eq!(counts.len(), 4);
    assert_eq!(counts[0], 120, "every sample is due in the first fine-tuning epoch");
    assert!(counts.iter().all(|&c| (1..=120).contains(&c)), "{counts:?}");
    let log = client.get(server.api(&format!("/runs/{id}/log"))).send().unwrap().text().unwrap();
    assert!(counts[1..].iter().any(|&c| c < 120), "recalled samples wait: {counts:?}\n{log}");
    let fractions: Vec<(u64, u64, f64)> = run["data_fraction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["epoch"].as_u64().unwrap(), e["shown"].as_u64().unwrap(), e["fraction"].as_f64().unwrap()))
        .collect();
    assert_eq!(fractions.iter().map(|f| f.0).collect::<Vec<_>>(), vec![2, 3, 4, 5]);
    for ((_, shown, fraction), count) in fractions.iter().zip(&counts) {
        assert_eq!((shown, *fraction), (count, *count as f64 / 120.0));
    }
    // The run page says it in a line.
    let (cookie, _, _) = sign_in(&server, ADMIN_USER, ADMIN_PASSWORD, false);
    let (status, _, html) = page(&server, &cookie, &format!("/runs/{id}"));
    assert_eq!(status, 200);
    let percent = |f: f64| format!("{:.1}%", f * 100.0);
    assert!(html.contains("Data per fine-tuning epoch") && html.contains("due samples only"), "the run page names the fraction");
    assert!(html.contains(&format!("3: {}", percent(fractions[1].2))), "epoch 3's fraction on the page");
}
