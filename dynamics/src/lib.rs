//! Training-dynamics analysis for forgetlab.
//!
//! Everything here is a pure function of per-epoch, per-sample records: no I/O, no libtorch,
//! no database. The server calls it when a run ends; tests call it against hand-worked cases.
//! Each public function documents its formula and where it comes from, so a reader can check
//! a number on a page against the paper that defined it.
//!
//! Not here: reading or writing records (the server), training (the trainer).

pub mod cartography;
pub mod classes;
pub mod decay;
pub mod events;
pub mod overlap;
pub mod rbf;
pub mod rng;
pub mod scores;
pub mod settings;
pub mod stats;
pub mod summary;
pub mod warmup;

pub use cartography::Cartography;
pub use decay::{Decay, DecayFit, DecaySummary, Exclusion, Retention, fit_lag_retention, fit_p_true};
pub use events::{ForgettingEvents, NeverLearnedPolicy};
pub use overlap::{TopSet, chance_jaccard, jaccard, jaccard_curve, top_set};
pub use scores::{Direction, SampleValues, Score};
pub use settings::{AnalysisSettings, Window};
pub use stats::{Correlation, MeanInterval, average_ranks, jackknife_over_seeds, kendall_tau_b, mean_interval, pearson, spearman, spearman_brown};
pub use summary::{SampleSummary, TraceColumns, summarize_samples};
