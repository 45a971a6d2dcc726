//! End-of-run per-sample statistics (events, cartography, the decay fit under each retention
//! definition, warm-up predictability; and the all-epochs window, whose warm-up
//! predictability refits the fine-tuning epochs) for 100,000 samples x 100 epochs, issue #4's goal <= 1 s. Two kinds of traces: uniform random correctness (every
//! trace distinct: the worst case for the fits) and traces shaped like training (each sample
//! learned at a difficulty-dependent epoch, then forgotten now and then).
//!
//! `cargo bench -p dynamics --bench summaries` (FORGETLAB_BENCH_SAMPLES, _EPOCHS).

use std::time::Instant;

use dynamics::rng::SplitMix64;
use dynamics::{AnalysisSettings, TraceColumns, Window, summarize_samples};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `[epoch][sample]` columns: (correct, p_true, loss).
fn traces(samples: usize, epochs: usize, shaped: bool) -> Vec<(Vec<u8>, Vec<f32>, Vec<f32>)> {
    let mut rng = SplitMix64::new(7);
    let difficulty: Vec<f32> = (0..samples).map(|_| rng.unit_f32()).collect();
    (0..epochs)
        .map(|t| {
            let mut correct = Vec::with_capacity(samples);
            let mut p_true = Vec::with_capacity(samples);
            for &d in &difficulty {
                let p = if shaped {
                    // Rises with the epoch, later for hard samples; 10 % noise.
                    let progress = (t as f32 + 1.0) / epochs as f32;
                    (progress / (d + 0.05)).min(1.0) * 0.9 + 0.1 * rng.unit_f32()
                } else {
                    rng.unit_f32()
                };
                correct.push(u8::from(p > 0.5));
                p_true.push(p);
            }
            let loss = p_true.iter().map(|p| -p.max(1e-6).ln()).collect();
            (correct, p_true, loss)
        })
        .collect()
}

fn main() {
    let samples = setting("FORGETLAB_BENCH_SAMPLES", 100_000);
    let epochs = setting("FORGETLAB_BENCH_EPOCHS", 100);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("{samples} samples x {epochs} epochs, {threads} threads (goal <= 1 s)");
    for (name, shaped) in [("uniform random traces", false), ("training-shaped traces", true)] {
        let data = traces(samples, epochs, shaped);
        let columns: Vec<TraceColumns> = data.iter().map(|(c, p, l)| TraceColumns::new(c, p, l)).collect();
        // A run with a head warm-up (1 epoch) under each retention definition, with the
        // default fine-tuning window: warm-up predictability reads the same summaries.
        for &retention in dynamics::Retention::ALL {
            let settings = AnalysisSettings { retention, ..AnalysisSettings::default() };
            let (seconds, fitted) = median_of_3(|| {
                let summaries = summarize_samples(&columns, 1, None, settings);
                let values: Vec<dynamics::SampleValues> = summaries.iter().map(dynamics::SampleValues::of).collect();
                let loss: Vec<Option<f64>> = summaries.iter().map(|s| s.warmup_loss.map(f64::from)).collect();
                dynamics::warmup::predictability(&values, &loss).rate.n
            });
            println!("{name}, fine-tuning window, definition {retention}: median {seconds:.3} s of 3 ({fitted} samples with a decay rate)");
        }
        // The all-epochs window: warm-up predictability refits the fine-tuning epochs alone.
        let (seconds, fitted) = median_of_3(|| {
            let summaries = summarize_samples(&columns, 1, None, AnalysisSettings { window: Window::All, ..AnalysisSettings::default() });
            let fine_tuning: Vec<dynamics::SampleValues> =
                summarize_samples(&columns[1..], 0, None, AnalysisSettings::default()).iter().map(dynamics::SampleValues::of).collect();
            let loss: Vec<Option<f64>> = summaries.iter().map(|s| s.warmup_loss.map(f64::from)).collect();
            dynamics::warmup::predictability(&fine_tuning, &loss).rate.n
        });
        println!("{name}, all-epochs window, definition a, with the fine-tuning refit: median {seconds:.3} s of 3 ({fitted} samples with a decay rate)");
    }
}

/// Runs `work` three times: the median seconds, and what the last run returned.
fn median_of_3(mut work: impl FnMut() -> usize) -> (f64, usize) {
    let mut times = Vec::new();
    let mut last = 0;
    for _ in 0..3 {
        let started = Instant::now();
        last = work();
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    (times[1], last)
}
