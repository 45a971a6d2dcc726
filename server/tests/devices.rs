//! Issue 18: local workers follow the machine's GPUs. With `FORGETLAB_WORKERS=auto` (the
//! default) the server starts one worker per GPU that `nvidia-smi -L` lists, each pinned to
//! its GPU with CUDA_VISIBLE_DEVICES, or one CPU worker where there is none. A stand-in
//! `nvidia-smi` on PATH plays the GPUs here (these machines have none).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::TestServer;

/// A folder holding an `nvidia-smi` that lists `gpus` GPUs as the real one does.
fn stand_in_nvidia_smi(gpus: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..gpus).map(|i| format!("echo 'GPU {i}: NVIDIA H200 (UUID: GPU-0000000{i}-1111-2222-3333-444444444444)'\n")).collect();
    let script = dir.path().join("nvidia-smi");
    std::fs::write(&script, format!("#!/bin/sh\n[ \"$1\" = \"-L\" ] || exit 2\n{lines}")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The CUDA_VISIBLE_DEVICES of each worker the server started, once `count` of them run.
fn worker_pins(server: &TestServer, count: usize) -> Vec<Option<String>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pids = server.worker_pids();
        if pids.len() >= count {
            let mut pins: Vec<Option<String>> = pids
                .iter()
                .map(|pid| {
                    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                    environ
                        .split(|&b| b == 0)
                        .filter_map(|v| std::str::from_utf8(v).ok())
                        .find_map(|v| v.strip_prefix("CUDA_VISIBLE_DEVICES=").map(str::to_owned))
                })
                .collect();
            pins.sort();
            return pins;
        }
        assert!(Instant::now() < deadline, "{} worker(s) after 20 s, expected {count}", pids.len());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn auto_starts_one_worker_per_gpu_pinned_or_one_cpu_worker() {
    let gpus = stand_in_nvidia_smi(2);
    let path = format!("{}:{}", gpus.path().display(), std::env::var("PATH").unwrap());
    let settings = [("FORGETLAB_WORKERS", "auto"), ("FORGETLAB_DEVICE", "auto"), ("PATH", path.as_str())];
    let server = TestServer::start_with(1, &settings);
    assert_eq!(worker_pins(&server, 2), vec![Some("0".to_owned()), Some("1".to_owned())], "one worker per GPU, each pinned to its own");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.worker_pids().len(), 2, "and no more");
    drop(server);

    // The administrator's own CUDA_VISIBLE_DEVICES wins over what nvidia-smi lists.
    let chosen = [("FORGETLAB_WORKERS", "auto"), ("FORGETLAB_DEVICE", "auto"), ("PATH", path.as_str()), ("CUDA_VISIBLE_DEVICES", "1")];
    let server = TestServer::start_with(1, &chosen);
    assert_eq!(worker_pins(&server, 1), vec![Some("1".to_owned())]);
    drop(server);

    // FORGETLAB_DEVICE=cpu: one worker, every GPU hidden from it.
    let cpu = [("FORGETLAB_WORKERS", "auto"), ("FORGETLAB_DEVICE", "cpu"), ("PATH", path.as_str())];
    let server = TestServer::start_with(1, &cpu);
    assert_eq!(worker_pins(&server, 1), vec![Some(String::new())]);
    drop(server);

    // No nvidia-smi at all: one worker, its environment left alone.
    let empty = tempfile::tempdir().unwrap();
    let nothing_on_path = empty.path().display().to_string();
    let plain = [("FORGETLAB_WORKERS", "auto"), ("FORGETLAB_DEVICE", "auto"), ("PATH", nothing_on_path.as_str())];
    let server = TestServer::start_with(1, &plain);
    assert_eq!(worker_pins(&server, 1), vec![None]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.worker_pids().len(), 1);
}

#[test]
fn a_run_that_asks_for_cuda_without_it_fails_saying_why_and_auto_says_what_it_chose() {
    common::require_fashion_mnist();
    let server = TestServer::start(1);
    let spec = |device: &str| serde_json::json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 1, "train_subset": 64, "val_subset": 32, "device": device});
    let cuda = common::launch(&server, spec("cuda"));
    let run = common::wait_for_run(&server, cuda, Duration::from_secs(120));
    assert_eq!(run["status"], "failed", "{run}");
    let error = run.to_string();
    assert!(
        error.contains("asks for device cuda") && error.contains("CPU build") && error.contains("FORGETLAB_TORCH=cuda"),
        "the failure says why and what to change: {run}"
    );

    let auto = common::launch(&server, spec("auto"));
    let run = common::wait_for_run(&server, auto, Duration::from_secs(300));
    assert_eq!(run["status"], "succeeded", "{run}");
    let log = common::log_lines(&server, auto);
    assert!(log.iter().any(|l| l.contains("training on cpu (") && l.contains("device setting auto")), "the job log says the device chosen and why: {log:#?}");
}
