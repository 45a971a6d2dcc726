//! The analysis choices a run's statistics are computed under. They are chosen at launch,
//! recorded with the statistics, and shown beside every number that depends on them.

use serde::{Deserialize, Serialize};

use crate::decay::Retention;
use crate::events::NeverLearnedPolicy;

/// Which epochs a run's per-sample statistics cover (docs/design.md, "Epoch window").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// The epochs after the head warm-up. The window is read as a trace of its own, as
    /// Toneva et al.'s code reads a run from its first epoch: the state before its first
    /// epoch counts as wrong, so a sample correct at the end of the warm-up and wrong at the
    /// first fine-tuning epoch has no forgetting event there (the `all` window counts it).
    /// Epoch numbers (first learned) stay the run's own. Without a warm-up it is every epoch.
    #[default]
    FineTuning,
    /// Every epoch, warm-up included.
    All,
}

impl Window {
    pub const ALL: &'static [Window] = &[Window::FineTuning, Window::All];

    pub fn as_str(self) -> &'static str {
        match self {
            Window::FineTuning => "fine_tuning",
            Window::All => "all",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|w| w.as_str() == text)
    }

    pub fn label(self) -> &'static str {
        match self {
            Window::FineTuning => "fine-tuning epochs (after the head warm-up)",
            Window::All => "all epochs (warm-up included)",
        }
    }

    /// The index of the window's first epoch among a run's epochs.
    pub fn start(self, warmup_epochs: usize) -> usize {
        match self {
            Window::FineTuning => warmup_epochs,
            Window::All => 0,
        }
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a run's statistics depend on besides its records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AnalysisSettings {
    pub window: Window,
    pub retention: Retention,
    pub never_learned: NeverLearnedPolicy,
    /// The epoch (1-based) whose EL2N is the run's `el2n` score; `None`: 10 % into the window
    /// (`crate::summary::el2n_epoch`).
    #[serde(default)]
    pub el2n_epoch: Option<u32>,
}

impl AnalysisSettings {
    /// What a run finished before these settings existed was computed with: every epoch,
    /// definition A, never-learned samples at the forgotten end.
    pub const LEGACY: AnalysisSettings =
        AnalysisSettings { window: Window::All, retention: Retention::A, never_learned: NeverLearnedPolicy::Max, el2n_epoch: None };
}
