use leptos::prelude::*;
use protocol::{Progress, RunStatus};

use super::{duration, number, percent};

/// A horizontal bar for a fraction in [0, 1], readable by screen readers and tests.
#[component]
pub fn ProgressBar(
    #[prop(into)] fraction: Signal<f64>,
    /// What the bar measures, for screen readers (`progress of run #3`).
    #[prop(into)]
    label: String,
) -> impl IntoView {
    let pct = move || (fraction.get() * 100.0).clamp(0.0, 100.0).floor() as u32;
    view! {
        <div class="progress" role="progressbar" aria-label=label aria-valuemin="0" aria-valuemax="100" aria-valuenow=move || pct().to_string()>
            <div class="progress-fill" style:width=move || format!("{}%", pct())></div>
            <span class="progress-label">{move || format!("{}%", pct())}</span>
        </div>
    }
}

/// How much of a run is done: the live or stored progress, else what its status implies.
pub fn fraction_done(progress: Option<&Progress>, status: RunStatus) -> f64 {
    progress.map_or(if status == RunStatus::Succeeded { 1.0 } else { 0.0 }, |p| p.fraction)
}

/// One line of what a running job is doing: phase, epoch, step, loss, throughput, time left.
pub fn progress_detail(progress: &Progress) -> String {
    let beat = &progress.heartbeat;
    let mut parts = vec![beat.phase.clone()];
    if beat.epoch > 0 {
        parts.push(format!("epoch {}/{}", beat.epoch, progress.epochs));
    }
    if beat.steps > 0 {
        parts.push(format!("step {}/{}", beat.step, beat.steps));
    }
    if beat.loss.is_some() {
        parts.push(format!("loss {}", number(beat.loss, 3)));
    }
    if let Some(accuracy) = beat.accuracy {
        parts.push(format!("acc {}", percent(accuracy)));
    }
    if let Some(rate) = beat.images_per_sec {
        parts.push(format!("{rate:.0} img/s"));
    }
    if let Some(eta) = beat.eta_seconds {
        parts.push(format!("{} left", duration(eta)));
    }
    if let Some(device) = &beat.device {
        // The device without the reason behind `cpu`, which the job log has.
        parts.push(device.split(" (").next().unwrap_or(device).to_owned());
    }
    if let Some(bytes) = beat.memory_bytes {
        parts.push(format!("{:.1} GiB RSS", bytes as f64 / f64::from(1u32 << 30)));
    }
    parts.join(" · ")
}
