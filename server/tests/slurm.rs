//! The Slurm executor against a real one-node Slurm cluster that the test starts on this
//! machine (Debian's munged, slurmctld and slurmd, with a configuration written here):
//! two runs go through `sbatch`, one of them is `scancel`led from outside (as a preemption
//! would end it) and must be re-queued and resume from its checkpoint, and both must store
//! records bitwise equal to the local executor's with the same seeds. Also: `sbatch` refusing
//! a job fails it with Slurm's words, and a missing `sbatch` says what to install.
//!
//! The cluster test is skipped, with the reason printed, only when Slurm cannot start here;
//! with FORGETLAB_REQUIRE_SLURM=1 (scripts/test sets it) that is a failure instead.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestServer, WORKER_TOKEN, launch, log_lines, records, require_fashion_mnist, wait_for_run, worker_bin};
use serde_json::{Value, json};
use sqlx::SqlitePool;

/// A one-node Slurm cluster in a temporary folder: munged, slurmctld and slurmd as children
/// of the test, on free ports, stopped when dropped.
struct SlurmCluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    daemons: Vec<(&'static str, Child)>,
}

const NODE: &str = "forgetlab-node";

fn program(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths).chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from)).map(|dir| dir.join(name)).find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl SlurmCluster {
    /// Starts the daemons and waits for the node to be idle. `Err` says why Slurm cannot run.
    fn start() -> Result<Self, String> {
        let mut missing = Vec::new();
        for name in ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "scontrol"] {
            if program(name).is_none() {
                missing.push(name);
            }
        }
        if !missing.is_empty() {
            return Err(format!(
                "{} not installed (Debian: apt-get install slurmctld slurmd slurm-client munge; scripts/test installs them)",
                missing.join(", ")
            ));
        }
        let dir = tempfile::Builder::new().prefix("fl-slurm").tempdir_in("/tmp").map_err(|e| format!("no temporary folder: {e}"))?;
        let mut cluster = Self { conf: dir.path().join("slurm.conf"), dir, daemons: Vec::new() };
        cluster.start_munge()?;
        cluster.write_config()?;
        let root = cluster.dir.path().to_owned();
        cluster.spawn("slurmctld", Command::new(program("slurmctld").unwrap()).args(["-D", "-i", "-f"]).arg(&cluster.conf), &root.join("slurmctld.out"))?;
        cluster.spawn("slurmd", Command::new(program("slurmd").unwrap()).args(["-D", "-N", NODE, "-f"]).arg(&cluster.conf), &root.join("slurmd.out"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state = cluster
                .command("sinfo")
                .args(["-h", "-N", "-o", "%T"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default();
            if state == "idle" {
                return Ok(cluster);
            }
            if let Some(reason) = cluster.exited() {
                return Err(reason);
            }
            if Instant::now() > deadline {
                return Err(format!("the Slurm node is {state:?}, not idle, after 60 s\n{}", cluster.logs()));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn start_munge(&mut self) -> Result<(), String> {
        let munge = self.dir.path().join("munge");
        std::fs::create_dir(&munge).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&munge, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        let key = munge.join("munge.key");
        std::fs::write(&key, rand_bytes(1024)).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).map_err(|e| e.to_string())?;
        let mut command = Command::new(program("munged").unwrap());
        command.arg("--foreground").arg("--force");
        for (flag, file) in
            [("--key-file", "munge.key"), ("--socket", "socket"), ("--pid-file", "munged.pid"), ("--log-file", "munged.log"), ("--seed-file", "munged.seed")]
        {
            command.arg(format!("{flag}={}", munge.join(file).display()));
        }
        self.spawn("munged", &mut command, &munge.join("munged.out"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !munge.join("socket").exists() {
            if let Some(reason) = self.exited() {
                return Err(reason);
            }
            if Instant::now() > deadline {
                return Err(format!("munged made no socket in 10 s\n{}", self.logs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// slurm.conf for one node with this machine's CPUs, no cgroups, no accounting database.
    fn write_config(&self) -> Result<(), String> {
        let root = self.dir.path();
        for folder in ["state", "spool"] {
            std::fs::create_dir_all(root.join(folder)).map_err(|e| e.to_string())?;
        }
        let detected = Command::new(program("slurmd").unwrap()).arg("-C").output().map_err(|e| format!("slurmd -C: {e}"))?;
        let detected = String::from_utf8_lossy(&detected.stdout);
        let cpus = detected.split_whitespace().find_map(|f| f.strip_prefix("CPUs=")).and_then(|c| c.parse::<u32>().ok()).unwrap_or(1);
        let user = std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "root".into());
        let r = root.display();
        let config = format!(
            "ClusterName=forgetlabtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld}
SlurmdPort={d}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/munge/socket
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
PropagateResourceLimits=NONE
KillWait=5
MinJobAge=300
NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname=localhost CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
",
            ctld = free_port(),
            d = free_port(),
        );
        std::fs::write(&self.conf, config).map_err(|e| e.to_string())
    }

    fn spawn(&mut self, name: &'static str, command: &mut Command, output: &Path) -> Result<(), String> {
        let file = std::fs::File::create(output).map_err(|e| e.to_string())?;
        let child = command
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(file.try_clone().map_err(|e| e.to_string())?)
            .stderr(file)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        self.daemons.push((name, child));
        Ok(())
    }

    /// A daemon that already exited, with the logs.
    fn exited(&mut self) -> Option<String> {
        let gone = self.daemons.iter_mut().find_map(|(name, child)| child.try_wait().ok().flatten().map(|status| format!("{name} exited ({status})")))?;
        Some(format!("{gone}\n{}", self.logs()))
    }

    /// The tail of every log the daemons wrote, for a reason to skip or fail.
    fn logs(&self) -> String {
        let mut text = String::new();
        for file in ["munge/munged.out", "munge/munged.log", "slurmctld.out", "slurmctld.log", "slurmd.out", "slurmd.log"] {
            let content = std::fs::read_to_string(self.dir.path().join(file)).unwrap_or_default();
            let tail: Vec<&str> = content.lines().rev().take(15).collect();
            text.push_str(&format!("--- {file}\n{}\n", tail.into_iter().rev().collect::<Vec<_>>().join("\n")));
        }
        text
    }

    /// A Slurm client command aimed at this cluster.
    fn command(&self, name: &str) -> Command {
        let mut command = Command::new(program(name).unwrap_or_else(|| name.into()));
        command.env("SLURM_CONF", &self.conf);
        command
    }
}

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        // Jobs first (a slurmstepd that cannot report its job's end to slurmctld waits for
        // ever), then the daemons.
        let listed =
            || self.command("squeue").args(["-h", "-o", "%i"]).output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
        for id in listed().split_whitespace() {
            let _ = self.command("scancel").arg(id).status();
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while !listed().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        for (_, child) in self.daemons.iter_mut().rev() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (_, child) in self.daemons.iter_mut().rev() {
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Any slurmstepd of this cluster still there (they ignore SIGTERM), known by the
        // SLURM_CONF they inherited from slurmd.
        let ours = format!("SLURM_CONF={}", self.conf.display());
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            if cmdline.starts_with(b"slurmstepd") && environ.split(|&b| b == 0).any(|var| var == ours.as_bytes()) {
                let _ = Command::new("kill").args(["-9", &entry.file_name().to_string_lossy()]).status();
            }
        }
    }
}

/// The environment of the worker process Slurm started for the job of `run_id` (its batch
/// script exports FORGETLAB_JOB_ID; job and run ids are equal in these fresh databases).
fn worker_environ(run_id: i64) -> Option<Vec<String>> {
    let wanted = format!("FORGETLAB_JOB_ID={run_id}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let environ = std::fs::read(entry.path().join("environ")).ok()?;
        let vars: Vec<String> = environ.split(|&b| b == 0).map(|v| String::from_utf8_lossy(v).into_owned()).collect();
        let is_worker = String::from_utf8_lossy(&cmdline).contains("forgetlab-worker");
        (is_worker && vars.contains(&wanted)).then_some(vars)
    })
}

fn rand_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    let mut file = std::fs::File::open("/dev/urandom").expect("/dev/urandom");
    std::io::Read::read_exact(&mut file, &mut bytes).expect("random bytes");
    bytes
}

/// One cluster at a time: clusters started side by side race for the free ports they pick
/// (and the machine has two cores).
static ONE_CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Slurm's answer to "why not run": skip with the reason, or fail when Slurm is required.
/// The cluster comes with the lock that keeps other cluster tests waiting.
fn cluster_or_skip() -> Option<(std::sync::MutexGuard<'static, ()>, SlurmCluster)> {
    let turn = ONE_CLUSTER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    match SlurmCluster::start() {
        Ok(cluster) => Some((turn, cluster)),
        Err(reason) if std::env::var("FORGETLAB_REQUIRE_SLURM").is_ok_and(|v| v == "1") => {
            panic!("Slurm cannot start here, and FORGETLAB_REQUIRE_SLURM=1: {reason}")
        }
        Err(reason) => {
            eprintln!("SKIPPED: Slurm cannot start on this machine: {reason}");
            None
        }
    }
}

fn spec(seed: u64, epochs: u32) -> Value {
    json!({"dataset": "fashion-mnist", "arch": "small_cnn", "warmup_epochs": 1, "epochs": epochs, "train_subset": 2000,
           "val_subset": 200, "batch_size": 50, "lr": 0.02, "seed": seed, "schedule": "cosine", "device": "cpu"})
}

/// GET a JSON route, with the reason when it is not JSON.
fn get_json(server: &TestServer, url: &str) -> Value {
    let response = server.client().get(url).send().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status();
    let text = response.text().unwrap_or_else(|e| panic!("GET {url}: {status}, body unreadable: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {status}, not JSON ({e}): {text}"))
}

fn run_summary(server: &TestServer, run_id: i64) -> Value {
    let runs = get_json(server, &server.api("/runs?limit=100"));
    runs.as_array().unwrap().iter().find(|r| r["id"] == run_id).cloned().unwrap_or_else(|| panic!("run {run_id} not listed: {runs}"))
}

fn epochs_stored(server: &TestServer, run_id: i64) -> usize {
    get_json(server, &server.api(&format!("/runs/{run_id}")))["epochs"].as_array().map_or(0, Vec::len)
}

/// The Slurm settings of the tests' servers.
fn slurm_settings(conf: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("FORGETLAB_EXECUTOR", "slurm".into()),
        ("FORGETLAB_SLURM_POLL_SECONDS", "1".into()),
        ("FORGETLAB_SLURM_WORKER_BIN", std::path::absolute(worker_bin()).unwrap().display().to_string()),
        ("FORGETLAB_SLURM_TIME", "20".into()),
        ("SLURM_CONF", conf.display().to_string()),
    ]
}

fn start_server(settings: &[(&'static str, String)]) -> TestServer {
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestServer::start_with(0, &settings)
}

#[test]
fn slurm_runs_jobs_like_the_local_executor_and_requeues_one_cancelled_from_outside() {
    require_fashion_mnist();
    assert!(worker_bin().is_file(), "no worker binary at {}: run `cargo build -p trainer` first", worker_bin().display());
    let Some((_turn, cluster)) = cluster_or_skip() else { return };
    let started = Instant::now();
    let slurm = start_server(&slurm_settings(&cluster.conf));
    // Run 1 is scancelled after its first epoch; run 2 runs through.
    let specs = [spec(31, 3), spec(32, 1)];
    let interrupted = launch(&slurm, specs[0].clone());
    let through = launch(&slurm, specs[1].clone());

    let deadline = Instant::now() + Duration::from_secs(300);
    while epochs_stored(&slurm, interrupted) < 1 {
        assert!(Instant::now() < deadline, "run {interrupted} stored no epoch in 300 s: {:?}", log_lines(&slurm, interrupted));
        std::thread::sleep(Duration::from_millis(50));
    }
    let first_slurm_job = run_summary(&slurm, interrupted)["slurm_job_id"].as_i64().expect("a Slurm job id on the running job");
    // The batch job's worker got what `--export` and its script give it, not the server's
    // secrets (issue 19, item 10; the test server has FORGETLAB_ADMIN_PASSWORD set).
    let environ = worker_environ(interrupted).expect("the Slurm job's worker process");
    for secret in ["FORGETLAB_ADMIN_PASSWORD=", "FORGETLAB_EXECUTOR=", "FORGETLAB_SLURM_POLL_SECONDS="] {
        assert!(!environ.iter().any(|v| v.starts_with(secret)), "the Slurm worker inherited {secret}");
    }
    assert!(environ.iter().any(|v| v.starts_with("FORGETLAB_WORKER_TOKEN=")) && environ.iter().any(|v| v.starts_with("PATH=")), "{environ:?}");
    let cancelled = cluster.command("scancel").arg(first_slurm_job.to_string()).status().unwrap();
    assert!(cancelled.success(), "scancel {first_slurm_job}");
    let stored_at_cancel = epochs_stored(&slurm, interrupted);
    assert!(stored_at_cancel < 4, "the scancel came before the run ended ({stored_at_cancel} epochs stored)");

    let runs = [interrupted, through].map(|id| wait_for_run(&slurm, id, Duration::from_secs(600)));
    for run in &runs {
        assert_eq!(run["status"], "succeeded", "{run}\nlog: {:#?}", log_lines(&slurm, run["id"].as_i64().unwrap()));
    }
    let slurm_seconds = started.elapsed().as_secs_f64();

    // The interrupted job was re-queued by the executor, submitted again, and resumed.
    let log = log_lines(&slurm, interrupted);
    eprintln!("job log of the interrupted run:\n{}", log.iter().filter(|l| !l.contains("epoch")).cloned().collect::<Vec<_>>().join("\n"));
    let ended = format!("Slurm job {first_slurm_job} ended (CANCELLED");
    assert!(log.iter().any(|l| l.contains(&ended) && l.contains("now queued") && l.contains("resumes from its last checkpoint")), "{log:#?}");
    let second_slurm_job = run_summary(&slurm, interrupted)["slurm_job_id"].as_i64().unwrap();
    assert_ne!(second_slurm_job, first_slurm_job, "submitted again as a new Slurm job");
    assert!(log.iter().any(|l| l.contains(&format!("submitted to Slurm as job {second_slurm_job}"))), "{log:#?}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (attempts, uploaded_by): (i64, Vec<i64>) = runtime.block_on(async {
        let pool = SqlitePool::connect(&format!("sqlite://{}?mode=ro", slurm.database().display())).await.unwrap();
        let attempts = sqlx::query_scalar("SELECT attempts FROM jobs WHERE run_id = ?").bind(interrupted).fetch_one(&pool).await.unwrap();
        let by = sqlx::query_scalar("SELECT attempt FROM epoch_metrics WHERE run_id = ? ORDER BY epoch").bind(interrupted).fetch_all(&pool).await.unwrap();
        (attempts, by)
    });
    assert_eq!(attempts, 2, "interrupted once, then resumed");
    let first_attempt = uploaded_by.iter().take_while(|&&a| a == 1).count();
    assert!(first_attempt >= 1 && uploaded_by[first_attempt..].iter().all(|&a| a == 2), "resumed, not restarted: epochs by attempt {uploaded_by:?}");
    // The jobs page shows the Slurm job.
    let page = slurm.client().get(format!("{}/jobs", slurm.url)).send().unwrap().text().unwrap();
    assert!(page.contains(&format!("Slurm job {second_slurm_job}")), "the jobs page names the Slurm job");

    // Cancelling a running run through forgetlab scancels its Slurm job.
    let doomed = launch(&slurm, spec(33, 3));
    let deadline = Instant::now() + Duration::from_secs(120);
    while run_summary(&slurm, doomed)["status"] != "running" {
        assert!(Instant::now() < deadline, "run {doomed} did not start: {:?}", log_lines(&slurm, doomed));
        std::thread::sleep(Duration::from_millis(100));
    }
    let doomed_slurm_job = run_summary(&slurm, doomed)["slurm_job_id"].as_i64().unwrap();
    let cancel = slurm.client().post(slurm.api(&format!("/runs/{doomed}/cancel"))).send().unwrap();
    assert!(cancel.status().is_success(), "{:?}", cancel.text());
    assert_eq!(wait_for_run(&slurm, doomed, Duration::from_secs(60))["status"], "cancelled");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = cluster.command("squeue").args(["-h", "-o", "%i"]).output().unwrap();
        if !String::from_utf8_lossy(&listed.stdout).split_whitespace().any(|id| id == doomed_slurm_job.to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "Slurm job {doomed_slurm_job} still listed a minute after its run was cancelled");
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = log_lines(&slurm, doomed);
    // The worker stops at its next heartbeat and its batch job ends; if the executor's poll
    // still lists the Slurm job first, it sends scancel too. Either way it left squeue (above).
    assert!(log.iter().any(|l| l.contains(&format!("scancel {doomed_slurm_job} sent")) || l.contains("outcome=Cancelled")), "{log:#?}");

    // The same runs through the local executor store the same records, bit for bit.
    let started_local = Instant::now();
    let local = TestServer::start(2);
    let local_runs = specs.clone().map(|spec| launch(&local, spec));
    for id in local_runs {
        assert_eq!(wait_for_run(&local, id, Duration::from_secs(600))["status"], "succeeded");
    }
    for (slurm_run, local_run) in [interrupted, through].into_iter().zip(local_runs) {
        let (a, b) = runtime.block_on(async { (records(&slurm.database(), slurm_run).await, records(&local.database(), local_run).await) });
        assert!(!a.epochs.is_empty());
        assert_eq!(a.epochs, b.epochs, "every epoch once");
        for ((epoch, x), y) in a.epochs.iter().zip(&a.columns).zip(&b.columns) {
            assert!(x == y, "run {slurm_run}, epoch {epoch}: the Slurm executor's records differ from the local executor's");
        }
        assert_eq!(a.eval_loss, b.eval_loss, "the loss after head warmup");
    }
    eprintln!("Slurm executor: {slurm_seconds:.1} s for both runs; local executor: {:.1} s", started_local.elapsed().as_secs_f64());
}

#[test]
fn sbatch_refusing_a_job_fails_it_with_slurms_words() {
    require_fashion_mnist();
    let Some((_turn, cluster)) = cluster_or_skip() else { return };
    let mut settings = slurm_settings(&cluster.conf);
    settings.push(("FORGETLAB_SLURM_PARTITION", "no-such-partition".into()));
    let server = start_server(&settings);
    let run_id = launch(&server, json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 1, "train_subset": 4}));
    let run = wait_for_run(&server, run_id, Duration::from_secs(60));
    assert_eq!(run["status"], "failed");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("sbatch refused the job") && error.contains("Invalid partition"), "{error}");
    assert!(log_lines(&server, run_id).iter().any(|l| l.contains("Invalid partition")));
}

/// Needs no cluster: the server's PATH has no `sbatch`.
#[test]
fn a_missing_sbatch_is_named_and_the_job_waits_and_single_job_leases_check_their_token() {
    require_fashion_mnist();
    let empty = tempfile::tempdir().unwrap();
    let settings = [
        ("FORGETLAB_EXECUTOR", "slurm".to_owned()),
        ("FORGETLAB_SLURM_POLL_SECONDS", "1".into()),
        ("FORGETLAB_SLURM_WORKER_BIN", "/opt/forgetlab/forgetlab-worker".into()),
        ("PATH", empty.path().display().to_string()),
    ];
    let server = start_server(&settings);
    let client = server.client();
    let tiny = json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 1, "train_subset": 4});
    let launched: Value = client.post(server.api("/runs")).json(&tiny).send().unwrap().json().unwrap();
    let (run_id, job) = (launched["id"].as_i64().unwrap(), launched["job_id"].as_i64().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = log_lines(&server, run_id);
        if let Some(line) = log.iter().find(|l| l.contains("sbatch")) {
            assert!(line.contains("FORGETLAB_EXECUTOR") && line.contains("slurm-client") && line.contains("stays queued"), "{line}");
            break;
        }
        assert!(Instant::now() < deadline, "no word about sbatch in the job's log: {log:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(run_summary(&server, run_id)["status"], "queued");

    // A single-job lease: a wrong token is refused; the worker token leases the job (no
    // submission holds it); a second lease of it is a conflict.
    let body = json!({"worker": "test", "job_id": job});
    assert_eq!(client.post(server.api("/worker/lease")).bearer_auth("wrong").json(&body).send().unwrap().status(), 401);
    let lease: Value = client.post(server.api("/worker/lease")).bearer_auth(WORKER_TOKEN).json(&body).send().unwrap().json().unwrap();
    assert_eq!(lease["run_id"], run_id);
    assert_eq!(client.post(server.api("/worker/lease")).bearer_auth(WORKER_TOKEN).json(&body).send().unwrap().status(), 409);
}
