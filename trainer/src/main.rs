//! `forgetlab-worker`: leases training jobs from a forgetlab server and runs them, one at a
//! time, until stopped. Started by the server for each local device slot, or by hand on
//! another machine with the server's URL and a worker token, or by a Slurm batch job for one
//! job (`--job ID` with that submission's token).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use protocol::worker::{Finish, Lease, Outcome};
use trainer::checkpoint;
use trainer::client::{Client, Refused};
use trainer::train::{Ending, Places, train};

#[derive(Parser)]
#[command(version, about = "Runs forgetlab training jobs leased from a forgetlab server.", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Args,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Trains one run without a server: a TOML run spec with a [dataset] table in, Parquet
    /// records out (rerun to resume after the last completed epoch).
    Train {
        #[arg(long)]
        config: std::path::PathBuf,
        /// Output folder: records/, epochs.csv, samples.parquet, spec.json, checkpoints/.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Writes the logits of a model with imported weights on float32 inputs, to compare
    /// with the framework the weights came from.
    Predict {
        /// small_cnn, resnet18 or deit_small.
        #[arg(long)]
        arch: String,
        /// A .safetensors file in the architecture's naming scheme (torchvision or timm).
        #[arg(long)]
        weights: std::path::PathBuf,
        /// A .npy float32 array [N, C, H, W], already normalised.
        #[arg(long)]
        input: std::path::PathBuf,
        /// Where to write the logits, a .npy float32 array [N, classes].
        #[arg(long)]
        out: std::path::PathBuf,
        /// cpu, cuda or auto.
        #[arg(long, default_value = "auto")]
        device: String,
    },
}

#[derive(clap::Args)]
struct Args {
    /// The server's base URL.
    #[arg(long, env = "FORGETLAB_SERVER", default_value = "http://127.0.0.1:3000")]
    server: String,
    /// Token that lets this process lease jobs (printed or configured by the server).
    #[arg(long, env = "FORGETLAB_WORKER_TOKEN", hide_env_values = true)]
    worker_token: Option<String>,
    /// Name shown on the jobs page.
    #[arg(long, env = "FORGETLAB_WORKER_NAME")]
    name: Option<String>,
    /// Seconds between lease attempts while the queue is empty.
    #[arg(long, default_value_t = 1.0)]
    poll_seconds: f64,
    /// Run at most one job, then exit (for batch schedulers).
    #[arg(long)]
    once: bool,
    /// Run this job only, then exit: a worker that a batch scheduler started for one job
    /// (forgetlab's Slurm executor), whose token may be valid for that job alone.
    #[arg(long, env = "FORGETLAB_JOB_ID")]
    job: Option<i64>,
    /// Exit when the process that started this one dies (set by the server for its local
    /// workers, so none is left training for a server that is gone).
    #[arg(long, env = "FORGETLAB_EXIT_WITH_PARENT")]
    exit_with_parent: bool,
    /// Folder for checkpoints (`checkpoints/run-N`) and the decoded-dataset cache; on a
    /// cluster, a path every node sees, so a re-queued job resumes wherever it lands.
    #[arg(long, env = "FORGETLAB_DATA_DIR", default_value = "data")]
    data_dir: std::path::PathBuf,
}

/// Asks the kernel to end this process when its parent dies (Linux), then checks the parent
/// is not already gone.
fn exit_with_parent() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag on this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
    }
    if std::os::unix::process::parent_id() == 1 {
        tracing::warn!("the server that started this worker is gone; exiting");
        std::process::exit(0);
    }
}

fn main() -> Result<()> {
    use tracing_subscriber::prelude::*;
    // To stderr, and (plain text) to the job's log on the server.
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(trainer::joblog::Capture))
        .init();
    let cli = Cli::parse();
    if let Some(Command::Train { config, out }) = &cli.command {
        let epochs = trainer::local::run(config, out)?;
        println!("recorded {epochs} epochs into {}", out.display());
        return Ok(());
    }
    if let Some(Command::Predict { arch, weights, input, out, device }) = cli.command {
        let arch = protocol::Arch::parse(&arch).ok_or_else(|| anyhow::anyhow!("unknown architecture {arch:?}; choose small_cnn, resnet18 or deit_small"))?;
        let device = protocol::Device::parse(&device).ok_or_else(|| anyhow::anyhow!("unknown device {device:?}; choose auto, cpu or cuda"))?;
        let [n, classes] = trainer::predict::predict(arch, &weights, &input, &out, trainer::torch_device(device)?)?;
        println!("wrote logits of {n} inputs x {classes} classes to {}", out.display());
        return Ok(());
    }
    let args = cli.serve;
    let Some(worker_token) = args.worker_token.clone() else {
        anyhow::bail!("no worker token: pass --worker-token or set FORGETLAB_WORKER_TOKEN (the server prints it), or use a subcommand (see --help)");
    };
    if args.exit_with_parent {
        exit_with_parent();
    }
    let name = args.name.clone().unwrap_or_else(|| format!("pid{}", std::process::id()));
    let client = Client::new(&args.server);
    // What a run with device `auto` trains on here, for the jobs page.
    let device = trainer::torch_device(protocol::Device::Auto).map(trainer::describe_device).unwrap_or_else(|e| format!("unknown ({e})"));
    tracing::info!(server = %args.server, worker = %name, cuda = tch::Cuda::is_available(), %device, "worker started");
    if let Some(job_id) = args.job {
        let lease = match client.lease_job(&worker_token, &name, job_id, &device) {
            Ok(lease) => lease,
            Err(error) if error.downcast_ref::<Refused>().is_some_and(|r| r.status == 409) => {
                // Cancelled, or taken by another worker, while this one waited to start.
                tracing::warn!("nothing to do: {error}");
                return Ok(());
            }
            Err(error) => return Err(error.context(format!("leasing job #{job_id} from {}", args.server))),
        };
        run_job(&client, &lease, &args.data_dir);
        return Ok(());
    }
    loop {
        let lease = match client.lease(&worker_token, &name, &device) {
            Ok(lease) => lease,
            Err(error) if error.downcast_ref::<Refused>().is_some_and(|r| r.status == 401) => {
                // The server no longer knows this worker (restarted with a new token): leave,
                // the server starts its own workers.
                anyhow::bail!("worker token refused by {}: {error}", args.server);
            }
            Err(error) => {
                tracing::warn!("lease failed: {error:#}");
                None
            }
        };
        let Some(lease) = lease else {
            std::thread::sleep(Duration::from_secs_f64(args.poll_seconds));
            continue;
        };
        run_job(&client, &lease, &args.data_dir);
        if args.once {
            return Ok(());
        }
    }
}

/// Trains a leased job (resuming from its checkpoint under `data_dir`) and reports its end.
fn run_job(client: &Client, lease: &Lease, data_dir: &std::path::Path) {
    tracing::info!(job = lease.job_id, run = lease.run_id, arch = %lease.spec.arch, "leased");
    let mut job = client.job(lease);
    let checkpoints = checkpoint::run_dir(data_dir, lease.run_id);
    let places = Places { checkpoints: Some(checkpoints.clone()), cache: Some(data_dir.join("cache")) };
    let result = catch_unwind(AssertUnwindSafe(|| train(&lease.spec, &lease.dataset, &mut job, &places, lease.source_values.as_ref())));
    let finish = match result {
        Ok(Ok(Ending::Completed(class_means))) => {
            checkpoint::Checkpoints::new(&checkpoints).clear();
            Finish { outcome: Outcome::Succeeded, message: None, class_means: Some(class_means) }
        }
        Ok(Ok(Ending::Cancelled)) => Finish { outcome: Outcome::Cancelled, message: None, class_means: None },
        Ok(Err(error)) => Finish { outcome: Outcome::Failed, message: Some(format!("{error:#}")), class_means: None },
        Err(panic) => Finish { outcome: Outcome::Failed, message: Some(panic_message(&panic)), class_means: None },
    };
    tracing::info!(job = lease.job_id, outcome = ?finish.outcome, message = ?finish.message, "finished");
    if let Err(error) = job.finish(&finish) {
        tracing::error!(job = lease.job_id, "could not report the end: {error:#}");
    }
}

/// libtorch errors arrive as panics from tch's infallible methods; keep their text.
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic.downcast_ref::<String>().map(String::as_str).or_else(|| panic.downcast_ref::<&str>().copied()).unwrap_or("the training code panicked");
    format!("training failed inside libtorch or the worker: {text}")
}
