//! Page speed and weight (issue #6): on a database holding a 100,000-sample x 100-epoch run
//! and 1,000 small finished runs (and 9,000 queued ones, for a 10,000-run table), the
//! server's time per page (p95 over repeated loads; goal <= 100 ms) and the bytes a browser
//! fetches before images: the page and the CSS, JS and wasm it loads, compressed as the server
//! sends them (goal <= 500 kB). Two browsers: Chromium over HTTPS or to localhost offers
//! brotli (`gzip, deflate, br, zstd`), over plain HTTP to another host only `gzip, deflate`.
//!
//! `cargo bench -p server --bench pages` (FORGETLAB_BENCH_SAMPLES, _EPOCHS, _SMALL_RUNS,
//! _QUEUED_RUNS, _LOADS; FORGETLAB_BENCH_DATA as in the storage bench, default `shaped`).
//! The pages are served by the real `forgetlab` binary over loopback, with the browser bundle
//! found in target/site (build it with `cargo leptos build --frontend-only [--release]`).

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{DatasetOptions, RunRequest};
use server::progress::Hub;
use server::queue::Queue;
use server::registry::Registry;
use server::service::Service;
use support::{Data, fake_run, key, median, p95, setting};

#[tokio::main]
async fn main() {
    let data = Data::from_env_or("shaped");
    let samples = setting("FORGETLAB_BENCH_SAMPLES", 100_000);
    let epochs = setting("FORGETLAB_BENCH_EPOCHS", 100) as u32;
    let small_runs = setting("FORGETLAB_BENCH_SMALL_RUNS", 1_000);
    let queued_runs = setting("FORGETLAB_BENCH_QUEUED_RUNS", 9_000);
    let loads = setting("FORGETLAB_BENCH_LOADS", 40);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
    let site = root.join("target/site");
    assert!(site.join("pkg/forgetlab.wasm").is_file(), "no browser bundle in {}: run `cargo leptos build --frontend-only` first", site.display());

    // The database, written through the server's own code paths.
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    {
        let pool = server::db::connect(&dir.path().join("forgetlab.db")).await.unwrap();
        let registry = Arc::new(Registry::new(pool.clone(), vec![dir.path().to_owned()]));
        let spec = format!("classes=10,train_per_class={},val_per_class=1,size=28,channels=1,seed=1", samples / 10);
        registry.register("bench", datasets::Format::Synthetic, Path::new(&spec), DatasetOptions::default()).await.expect("register");
        let hub = Hub::default();
        let service = Service::new(pool.clone(), registry.clone(), hub.clone());
        let queue = Queue::new(pool.clone(), hub, registry, "bench", 3600);
        let big = fake_run(&service, &queue, &data, samples, epochs, 1, "big").await.0;
        let second = fake_run(&service, &queue, &data, samples, 2, 2, "big").await.0;
        for r in 0..small_runs {
            fake_run(&service, &queue, &Data::Shaped, 500, 5, 100 + r as u64, "small").await;
        }
        for r in 0..queued_runs {
            let request = RunRequest {
                dataset: Some("bench".into()),
                arch: Some(if r % 2 == 0 { "resnet18" } else { "small_cnn" }.into()),
                epochs: Some(10.into()),
                seed: Some(r.into()),
                tags: Some("queued".into()),
                ..Default::default()
            };
            service.launch(request, &support::bench_admin()).await.expect("launch");
        }
        assert_eq!((big, second), (1, 2));
        pool.close().await;
    }
    println!(
        "database: one {samples} x {epochs} run, one {samples} x 2 run, {small_runs} finished runs of 500 x 5, {queued_runs} queued runs ({:.0} s to write)",
        started.elapsed().as_secs_f64()
    );

    let site_root = site.display().to_string();
    let server = support::BenchServer::start(dir.path(), &[("FORGETLAB_WORKERS", "0"), ("FORGETLAB_SITE_ROOT", &site_root)]).await;
    let base = server.base.clone();
    // No automatic decompression: the body's length is what crossed the wire.
    let client = reqwest::Client::builder().build().unwrap();
    let started = Instant::now();
    while client.get(format!("{base}/api/v1/health")).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "the server did not answer");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Pages need an account: the bench reads them with an administrator's API token.
    let client = support::signed_in(&base, reqwest::Client::builder()).await;
    const BROTLI: &str = "gzip, deflate, br, zstd";
    const GZIP: &str = "gzip, deflate";
    let fetch_as = |path: String, accept: &'static str| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move {
            let started = Instant::now();
            let response = client.get(&url).header("accept-encoding", accept).send().await.expect("GET");
            let status = response.status();
            let encoding = response.headers().get("content-encoding").map(|v| v.to_str().unwrap_or_default().to_owned());
            let precompressed = response.headers().contains_key("content-length");
            let bytes = response.bytes().await.expect("body").len();
            assert!(status.is_success(), "{url}: {status}");
            (started.elapsed().as_secs_f64() * 1e3, bytes, encoding, precompressed)
        }
    };
    let fetch = |path: String| {
        let fetch_as = fetch_as.clone();
        async move {
            let (ms, bytes, _, _) = fetch_as(path, BROTLI).await;
            (ms, bytes)
        }
    };
    // The server writes the bundle's brotli and gzip copies in the background after a build:
    // wait for them (a file sent as it is has a length; one compressed on the fly has none).
    let started = Instant::now();
    loop {
        let (_, _, encoding, precompressed) = fetch_as("/pkg/forgetlab.wasm".to_owned(), BROTLI).await;
        if encoding.as_deref() == Some("br") && precompressed {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the bundle's brotli copy was not written within 2 minutes");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (mut assets_br, mut assets_gzip) = (0, 0);
    for asset in ["/pkg/forgetlab.css", "/pkg/forgetlab.js", "/pkg/forgetlab.wasm"] {
        let (_, br, br_encoding, _) = fetch_as(asset.to_owned(), BROTLI).await;
        let (_, gzip, gzip_encoding, _) = fetch_as(asset.to_owned(), GZIP).await;
        let (_, raw, _, _) = fetch_as(asset.to_owned(), "identity").await;
        println!(
            "asset {asset}: {:.1} kB, sent as {:.1} kB ({}) or {:.1} kB ({})",
            raw as f64 / 1e3,
            br as f64 / 1e3,
            br_encoding.unwrap_or_default(),
            gzip as f64 / 1e3,
            gzip_encoding.unwrap_or_default()
        );
        assets_br += br;
        assets_gzip += gzip;
    }
    let sample = key(4242 % samples);
    let small: Vec<String> = (3..9).map(|id| id.to_string()).collect();
    let pages = [
        ("runs table, newest of 10,000".to_owned(), "/".to_owned()),
        ("runs table, tag and sort".to_owned(), "/?tag=small&sort=-seed".to_owned()),
        ("runs table, filtered page 11".to_owned(), "/?arch=resnet18&status=queued&offset=500".to_owned()),
        ("jobs".to_owned(), "/jobs".to_owned()),
        (format!("big run ({samples} x {epochs})"), "/runs/1".to_owned()),
        ("big run's samples".to_owned(), "/runs/1/samples".to_owned()),
        ("big run's samples, filtered by tau and events".to_owned(), "/runs/1/samples?min_forgetting_events=2&sort=-tau".to_owned()),
        ("one sample's history (2 runs)".to_owned(), format!("/runs/1/samples/{sample}")),
        ("small run".to_owned(), "/runs/3".to_owned()),
        (format!("compare the two {samples}-sample runs, with a pair"), "/compare?runs=1,2".to_owned()),
        ("compare 6 small runs".to_owned(), format!("/compare?runs={}", small.join(","))),
    ];
    println!("{:<58} {:>9} {:>9} {:>10} {:>15} {:>17}", "page", "median ms", "p95 ms", "page kB", "+assets kB (br)", "+assets kB (gzip)");
    let mut worst = (0.0f64, 0usize, 0usize);
    for (name, path) in pages {
        // The first load fills the compare cache and SQLite's page cache; the p95 is over the rest.
        let (_, bytes) = fetch(path.clone()).await;
        let mut times = Vec::new();
        for _ in 0..loads {
            times.push(fetch(path.clone()).await.0);
        }
        let (with_br, with_gzip) = (bytes + assets_br, bytes + assets_gzip);
        worst = (worst.0.max(p95(times.clone())), worst.1.max(with_br), worst.2.max(with_gzip));
        println!(
            "{name:<58} {:>9.1} {:>9.1} {:>10.1} {:>15.1} {:>17.1}",
            median(times.clone()),
            p95(times),
            bytes as f64 / 1e3,
            with_br as f64 / 1e3,
            with_gzip as f64 / 1e3
        );
    }
    println!(
        "worst page p95 {:.1} ms (goal <= 100 ms); heaviest page with its assets {:.0} kB with brotli, {:.0} kB with gzip only (goal <= 500 kB)",
        worst.0,
        worst.1 as f64 / 1e3,
        worst.2 as f64 / 1e3
    );

    // Where the big run's page spends its time: the API routes behind its server functions
    // (each one's JSON; the page renders the same data).
    println!("{:<58} {:>9} {:>9}", "the big run's page, part by part (JSON API)", "median ms", "p95 ms");
    for (name, path) in [
        ("run detail (epochs, histogram, confusion, analysis)", "/api/v1/runs/1"),
        ("data map (computed each time; the page reads it cached)", "/api/v1/runs/1/datamap"),
        ("classes", "/api/v1/runs/1/classes"),
        ("20 most forgotten samples", "/api/v1/runs/1/samples?sort=-forgetting_events&limit=20"),
        ("job log tail", "/api/v1/runs/1/log?tail=40"),
    ] {
        fetch(path.to_owned()).await;
        let mut times = Vec::new();
        for _ in 0..loads {
            times.push(fetch(path.to_owned()).await.0);
        }
        println!("{name:<58} {:>9.1} {:>9.1}", median(times.clone()), p95(times));
    }
    drop(server);
}
