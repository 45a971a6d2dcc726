//! Training schedules (docs/design.md, "Sample selection"): which training samples
//! each fine-tuning epoch shows, at a per-epoch sample budget that the arms of a study share.
//!
//! A schedule is the run spec's `sampling` field, e.g.
//! `{"kind": "leitner", "budget": 0.5, "decks": 5}`; absent, it is `full` (every sample every
//! epoch, the behaviour before schedules existed). The worker draws the samples
//! (`trainer::schedule`), measures every sample every epoch all the same, and uploads the set
//! it showed with each epoch ([`crate::worker::EpochUpload::shown`]); the server stores it with
//! the run. Head-warmup epochs show every sample under every schedule: the warmup is the
//! common start of all arms, and the curricula need its loss.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::spec::{FieldErrors, Fields, choice_enum};

/// A run's training schedule: what it shows per fine-tuning epoch, and how many.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Fraction of the training samples shown in each fine-tuning epoch, in (0, 1]; the count
    /// is [`Sampling::shown_count`]. Arms of a study share it, so they see equally many samples.
    pub budget: f64,
    #[serde(flatten)]
    pub plan: Plan,
}

/// The schedules. Every one shows exactly [`Sampling::shown_count`] samples per fine-tuning
/// epoch; ties are broken by a draw seeded by the run's seed and the epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Plan {
    /// Every sample every epoch, shuffled (budget 1).
    Full,
    /// A uniform draw without replacement each epoch.
    Random,
    /// Curriculum by the loss after head warmup (Bengio et al. 2009; linear pacing as Hacohen
    /// & Weinshall 2019): fine-tuning epoch f of F draws its samples uniformly from the
    /// `m + (n - m)(f - 1)/(F - 1)` easiest and batches them in a random order (mini-batches
    /// uniform from the pool). At budget 1 the pool is every sample: a plain shuffle.
    EasyToHard,
    /// The same from the hardest end: the pool grows from the hardest samples.
    HardToEasy,
    /// Static spaced repetition by the decay constants tau of an earlier run: each epoch shows
    /// the samples whose predicted retention `exp(-age / tau)` is lowest, where `age` is the
    /// number of epochs since the sample was last shown.
    SpacedRepetition { source_run: SourceRuns },
    /// Leitner queues (Leitner 1972; as Amiri et al. 2017): every sample starts in deck 0;
    /// deck k is due every 2^k fine-tuning epochs; a shown sample moves up a deck when it is
    /// correct at the end of the epoch and down one when it is wrong (as Amiri et al.; the
    /// classic card box sends it back to the first).
    Leitner { decks: u32 },
    /// Repeat before Forgetting (Amiri, Miller & Savova 2017; `dynamics::rbf`): after each
    /// fine-tuning epoch the kernel constant tau is fitted in closed form to the validation
    /// items recalled with confidence >= `nu`; a shown sample that is recalled (classified
    /// correctly) is next due after the longest delay at which its predicted recall
    /// `kernel(loss * delay / strength; tau)` stays at or above `nu`, and one that is not
    /// stays due. Each epoch shows the most overdue samples. At the matched budget
    /// (`due_only: false`, the default, for comparisons with other arms) an epoch with fewer
    /// due fills up with those due soonest; with `due_only: true` it trains on the due samples
    /// only (at most the budget, at least one), as Amiri et al., and the data fraction per
    /// epoch is RbF's saving.
    Rbf {
        nu: f64,
        #[serde(default)]
        kernel: RbfKernel,
        #[serde(default)]
        due_only: bool,
    },
    /// Data pruning by a per-sample score of an earlier run (or of several seeds combined):
    /// the same `m` samples with the highest (`top`) or lowest (`bottom`) score every epoch.
    Prune { source_run: SourceRuns, score: SampleScore, keep: Keep },
}

/// The earlier run or runs a schedule reads. Several runs (seeds) combine per sample as the
/// references do (`dynamics::Score::over_seeds`: Toneva et al.'s sum of forgetting events
/// over seeds, Paul et al.'s EL2N averaged over seeds). In JSON one run is a number, as
/// before, and several are an array (or, from a form, `"12, 13, 14"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRuns(pub Vec<i64>);

impl SourceRuns {
    pub fn one(run: i64) -> Self {
        SourceRuns(vec![run])
    }
}

impl fmt::Display for SourceRuns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let runs: Vec<String> = self.0.iter().map(|r| format!("#{r}")).collect();
        f.write_str(&runs.join(", "))
    }
}

impl Serialize for SourceRuns {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => serializer.serialize_i64(*one),
            many => many.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for SourceRuns {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            One(i64),
            Many(Vec<i64>),
        }
        Ok(match Stored::deserialize(deserializer)? {
            Stored::One(run) => SourceRuns(vec![run]),
            Stored::Many(runs) => SourceRuns(runs),
        })
    }
}

/// A per-sample statistic of a finished run, as a schedule's input: `dynamics`' one list of
/// scores, with each one's direction and meaning.
pub use dynamics::Score as SampleScore;
/// RbF's recall kernel (`dynamics::rbf::Kernel`: gaussian, laplace, linear, cosine,
/// quadratic, secant).
pub use dynamics::rbf::Kernel as RbfKernel;
choice_enum!(
    /// Which end of a score pruning keeps.
    Keep { Top => "top", Bottom => "bottom" }
);

/// Schedule names, as `kind` takes them.
pub const KINDS: &[&str] = &["full", "random", "easy_to_hard", "hard_to_easy", "spaced_repetition", "leitner", "rbf", "prune"];
/// Leitner decks when the request names none.
pub const DEFAULT_DECKS: u32 = 5;
pub const MAX_DECKS: u64 = 16;
/// RbF's recall threshold when the request names none.
pub const DEFAULT_NU: f64 = 0.9;

impl Default for Sampling {
    fn default() -> Self {
        Sampling { budget: 1.0, plan: Plan::Full }
    }
}

impl Plan {
    pub fn kind(&self) -> &'static str {
        match self {
            Plan::Full => "full",
            Plan::Random => "random",
            Plan::EasyToHard => "easy_to_hard",
            Plan::HardToEasy => "hard_to_easy",
            Plan::SpacedRepetition { .. } => "spaced_repetition",
            Plan::Leitner { .. } => "leitner",
            Plan::Rbf { .. } => "rbf",
            Plan::Prune { .. } => "prune",
        }
    }
}

impl fmt::Display for Sampling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.plan {
            Plan::Full => f.write_str("full"),
            plan => {
                write!(f, "{} at budget {}", plan.kind(), self.budget)?;
                match plan {
                    Plan::Prune { source_run, score, keep } => write!(f, ", keeping the {keep} {score} of {source_run}"),
                    Plan::Rbf { kernel, due_only, .. } => {
                        if *kernel != RbfKernel::default() {
                            write!(f, ", {kernel} kernel")?;
                        }
                        if *due_only {
                            f.write_str(", due samples only")?;
                        }
                        Ok(())
                    }
                    Plan::SpacedRepetition { source_run } => write!(f, ", by the tau of {source_run}"),
                    _ => Ok(()),
                }
            }
        }
    }
}

impl Sampling {
    /// Samples shown per fine-tuning epoch out of `n`: `round(budget * n)`, at least 1 (all
    /// `n` for `full`). The same for every arm over the same samples at the same budget; an
    /// RbF arm with `due_only` shows at most this many ([`Sampling::shows_fewer`]).
    pub fn shown_count(&self, n: usize) -> usize {
        match self.plan {
            Plan::Full => n,
            _ => ((self.budget * n as f64).round() as usize).clamp(n.min(1), n),
        }
    }

    /// Reads one schedule as a run request's `sampling` holds it (a kind, or an object), e.g.
    /// an arm of a study; messages are keyed `sampling` and `sampling.<key>`. Checks that
    /// involve the rest of a run spec (measurement, warmup) come with `ExperimentSpec::parse`.
    pub fn parse(value: &Value) -> Result<Sampling, FieldErrors> {
        let mut errors = FieldErrors::default();
        let sampling = parse_sampling(&mut Fields { errors: &mut errors }, &Some(value.clone()));
        if errors.is_empty() { Ok(sampling) } else { Err(errors) }
    }

    /// Whether an epoch may show fewer than [`Sampling::shown_count`] (RbF on due samples only).
    pub fn shows_fewer(&self) -> bool {
        matches!(self.plan, Plan::Rbf { due_only: true, .. })
    }

    /// Whether some fine-tuning epochs leave samples out.
    pub fn shows_subset(&self) -> bool {
        self.budget < 1.0 || self.shows_fewer()
    }

    /// The earlier runs whose per-sample values the schedule needs, with the value it needs.
    pub fn source(&self) -> Option<(&[i64], SampleScore)> {
        match &self.plan {
            Plan::SpacedRepetition { source_run } => Some((&source_run.0, SampleScore::Tau)),
            Plan::Prune { source_run, score, .. } => Some((&source_run.0, *score)),
            _ => None,
        }
    }

    /// Whether the schedule orders samples by the loss after head warmup.
    pub fn needs_warmup_loss(&self) -> bool {
        matches!(self.plan, Plan::EasyToHard | Plan::HardToEasy)
    }
}

/// A sample selection from a form's fields: `kind` and, by name, the texts typed for `budget`
/// and the kinds' own keys; blank fields and keys this kind does not take ([`takes`]) are left
/// out (the parser then applies the defaults and names what is missing). `None` for a blank
/// kind.
pub fn from_form(kind: &str, fields: &[(&str, &str)]) -> Option<Value> {
    let kind = kind.trim();
    if kind.is_empty() {
        return None;
    }
    if kind == "full" {
        return Some(Value::String(kind.into()));
    }
    let mut object = serde_json::Map::new();
    object.insert("kind".into(), Value::String(kind.into()));
    for &(key, text) in fields {
        if takes(kind, key) && !text.trim().is_empty() {
            object.insert(key.into(), Value::String(text.trim().into()));
        }
    }
    Some(Value::Object(object))
}

/// Whether selection `kind` reads `key`: every kind but `full` (blank is `full`) reads
/// `budget`, and each its own [`keys_of`]. The launch form shows only these fields.
pub fn takes(kind: &str, key: &str) -> bool {
    !matches!(kind.trim(), "" | "full") && (key == "budget" || keys_of(kind.trim()).contains(&key))
}

/// Keys each kind takes besides `kind` and `budget`.
pub fn keys_of(kind: &str) -> &'static [&'static str] {
    match kind {
        "spaced_repetition" => &["source_run"],
        "leitner" => &["decks"],
        "rbf" => &["nu", "kernel", "due_only"],
        "prune" => &["source_run", "score", "keep"],
        _ => &[],
    }
}

/// Reads the request's `sampling`: absent or blank means `full`; a string names a kind with
/// its defaults; an object holds `kind`, `budget` and the kind's own keys. Messages go under
/// `sampling` or `sampling.<key>`.
pub(crate) fn parse_sampling(field: &mut Fields<'_>, value: &Option<Value>) -> Sampling {
    let object = match value {
        None | Some(Value::Null) => return Sampling::default(),
        Some(Value::String(kind)) if kind.trim().is_empty() => return Sampling::default(),
        Some(Value::String(kind)) => {
            let mut object = serde_json::Map::new();
            object.insert("kind".into(), Value::String(kind.clone()));
            object
        }
        Some(Value::Object(object)) => object.clone(),
        Some(other) => {
            field.errors.add("sampling", format!("must be a sample selection name or an object with a kind (one of {}), got {other}", KINDS.join(", ")));
            return Sampling::default();
        }
    };
    let kind = match object.get("kind") {
        Some(Value::String(kind)) if KINDS.contains(&kind.trim()) => kind.trim().to_owned(),
        Some(Value::String(kind)) => {
            field.errors.add("sampling", format!("unknown sample selection {kind:?}; choose one of {}", KINDS.join(", ")));
            return Sampling::default();
        }
        _ => {
            field.errors.add("sampling", format!("needs a kind: one of {}", KINDS.join(", ")));
            return Sampling::default();
        }
    };
    let own = keys_of(&kind);
    for key in object.keys().filter(|k| !matches!(k.as_str(), "kind" | "budget") && !own.contains(&k.as_str())) {
        let takes = if own.is_empty() { "only kind and budget".to_owned() } else { format!("kind, budget, {}", own.join(", ")) };
        field.errors.add(&format!("sampling.{key}"), format!("{kind} takes {takes}; remove {key}"));
    }
    let get = |key: &str| object.get(key).cloned();
    let budget = field.positive("sampling.budget", &get("budget"), 1.0).unwrap_or(1.0);
    let source_run = |field: &mut Fields<'_>| {
        if Fields::present(&get("source_run")).is_none() {
            field.errors.add(
                "sampling.source_run",
                format!("{kind} needs source_run: the id of an earlier succeeded run over the same dataset (or several, one per seed)"),
            );
            return SourceRuns::one(0);
        }
        // One id, or several: an array, or ids separated by commas.
        let items: Vec<Value> = match get("source_run") {
            Some(Value::Array(items)) => items,
            Some(Value::String(text)) => text.split(',').map(|t| Value::String(t.trim().to_owned())).collect(),
            other => other.into_iter().collect(),
        };
        let runs: Vec<i64> =
            items.iter().filter_map(|item| field.whole("sampling.source_run", &Some(item.clone()), 1, i64::MAX as u64)).map(|r| r as i64).collect();
        let mut distinct = runs.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if items.is_empty() {
            field.errors.add("sampling.source_run", "names no run; give the id of an earlier succeeded run (or several, one per seed)".to_owned());
        } else if distinct.len() < runs.len() {
            field.errors.add("sampling.source_run", format!("names a run twice: {}", SourceRuns(runs.clone())));
        }
        SourceRuns(runs)
    };
    let plan = match kind.as_str() {
        "full" => {
            if budget != 1.0 {
                field.errors.add("sampling.budget", format!("full shows every sample every epoch (budget 1), got {budget}; choose random for a subset"));
            }
            Plan::Full
        }
        "random" => Plan::Random,
        "easy_to_hard" => Plan::EasyToHard,
        "hard_to_easy" => Plan::HardToEasy,
        "spaced_repetition" => Plan::SpacedRepetition { source_run: source_run(field) },
        "leitner" => Plan::Leitner { decks: field.whole("sampling.decks", &get("decks"), 1, MAX_DECKS).map_or(DEFAULT_DECKS, |d| d as u32) },
        "rbf" => {
            let nu = field.positive("sampling.nu", &get("nu"), 1.0).unwrap_or(DEFAULT_NU);
            if nu >= 1.0 {
                field.errors.add("sampling.nu", format!("the recall threshold nu must be above 0 and below 1, got {nu}"));
            }
            let kernel = field.choice("sampling.kernel", &get("kernel"), RbfKernel::parse, RbfKernel::names).unwrap_or_default();
            let due_only = field.flag("sampling.due_only", &get("due_only")).unwrap_or(false);
            Plan::Rbf { nu, kernel, due_only }
        }
        _ => {
            let source_run = source_run(field);
            let score = field.choice("sampling.score", &get("score"), SampleScore::parse, score_names);
            if Fields::present(&get("score")).is_none() {
                field.errors.add("sampling.score", format!("prune needs a score: one of {}", score_names()));
            }
            let keep = field.choice("sampling.keep", &get("keep"), Keep::parse, Keep::names).unwrap_or(Keep::Top);
            Plan::Prune { source_run, score: score.unwrap_or(SampleScore::ForgettingEvents), keep }
        }
    };
    Sampling { budget, plan }
}

/// Field errors of a schedule that depend on other fields of the spec.
pub(crate) fn check_against_spec(sampling: &Sampling, warmup_epochs: u64, errors: &mut FieldErrors) {
    if sampling.needs_warmup_loss() && warmup_epochs == 0 {
        errors.add("sampling", format!("{} orders samples by their loss after the head warmup; set warmup_epochs to 1 or more", sampling.plan.kind()));
    }
}

/// `GET /api/v1/runs/{id}/shown`: the run's schedule and the samples each epoch showed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShownSamples {
    pub run_id: i64,
    pub sampling: Sampling,
    /// Training samples of the run (0 before the worker sent its manifest).
    pub sample_count: u64,
    /// Every stored epoch, ascending.
    pub epochs: Vec<ShownEpoch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShownEpoch {
    pub epoch: u32,
    /// How many samples the epoch trained on.
    pub count: u64,
    /// Every sample was shown (head warmup, `full`); `samples` is then empty.
    pub every: bool,
    /// Sample indices (manifest positions) shown, ascending, when not `every`.
    pub samples: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_source_runs_combine_seeds_and_one_stays_a_number() {
        for (given, runs) in [(json!([4, 5, 6]), vec![4, 5, 6]), (json!("4, 5,6"), vec![4, 5, 6]), (json!(4), vec![4])] {
            let sampling = Sampling::parse(&json!({"kind": "prune", "budget": 0.5, "source_run": given, "score": "el2n"})).unwrap();
            assert_eq!(sampling.source(), Some((runs.as_slice(), SampleScore::El2n)));
            // Stored specs: one run is the number it always was; several are an array.
            let stored = serde_json::to_value(&sampling).unwrap();
            assert_eq!(stored["source_run"], if runs.len() == 1 { json!(4) } else { json!(runs) });
            assert_eq!(serde_json::from_value::<Sampling>(stored).unwrap(), sampling);
        }
        let errors = Sampling::parse(&json!({"kind": "prune", "budget": 0.5, "source_run": [4, 4], "score": "tau"})).unwrap_err();
        assert_eq!(errors.get("sampling.source_run"), Some("names a run twice: #4, #4"));
        let errors = Sampling::parse(&json!({"kind": "spaced_repetition", "budget": 0.5, "source_run": [4, "x"]})).unwrap_err();
        assert!(errors.get("sampling.source_run").unwrap().contains("\"x\""), "{errors}");
    }

    #[test]
    fn a_form_selection_keeps_what_its_kind_takes() {
        let fields = [("budget", " 0.5 "), ("source_run", "12"), ("decks", ""), ("nu", "0.8")];
        let spaced = from_form("spaced_repetition", &fields).unwrap();
        assert_eq!(spaced, serde_json::json!({"kind": "spaced_repetition", "budget": "0.5", "source_run": "12"}));
        assert_eq!(Sampling::parse(&spaced).unwrap(), Sampling { budget: 0.5, plan: Plan::SpacedRepetition { source_run: SourceRuns::one(12) } });
        assert_eq!(from_form("full", &fields), Some(Value::String("full".into())), "full shows everything: no budget");
        assert_eq!(from_form(" ", &fields), None);
        let errors = Sampling::parse(&from_form("prune", &[("budget", "0.3")]).unwrap()).unwrap_err();
        assert!(errors.get("sampling.source_run").is_some() && errors.get("sampling.score").is_some(), "{errors:?}");
    }

    #[test]
    fn each_kind_takes_its_own_fields_and_the_budget() {
        let keys = ["budget", "source_run", "score", "keep", "decks", "nu", "kernel", "due_only"];
        let taken = |kind: &str| keys.iter().filter(|k| takes(kind, k)).copied().collect::<Vec<_>>();
        assert_eq!(taken("full"), Vec::<&str>::new());
        assert_eq!(taken(""), Vec::<&str>::new());
        assert_eq!(taken("random"), ["budget"]);
        assert_eq!(taken("easy_to_hard"), ["budget"]);
        assert_eq!(taken("spaced_repetition"), ["budget", "source_run"]);
        assert_eq!(taken("prune"), ["budget", "source_run", "score", "keep"]);
        assert_eq!(taken("leitner"), ["budget", "decks"]);
        assert_eq!(taken(" rbf "), ["budget", "nu", "kernel", "due_only"]);
    }
    use crate::spec::tests::fashion;
    use crate::spec::{ExperimentSpec, Measure, RunRequest};
    use serde_json::json;

    fn parse(sampling: Value, extra: Value) -> Result<ExperimentSpec, FieldErrors> {
        let mut request = json!({"dataset": "fashion-mnist", "arch": "small_cnn", "epochs": 4, "warmup_epochs": 1, "sampling": sampling});
        request.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let request: RunRequest = serde_json::from_value(request).unwrap();
        ExperimentSpec::parse(&request, &fashion())
    }

    #[test]
    fn absent_sampling_is_full_and_old_specs_read_as_full() {
        let spec = parse(Value::Null, json!({})).unwrap();
        assert_eq!(spec.sampling, Sampling::default());
        assert_eq!(spec.measure, Measure::InBatch);
        let mut stored = serde_json::to_value(&spec).unwrap();
        stored.as_object_mut().unwrap().remove("sampling");
        let reread: ExperimentSpec = serde_json::from_value(stored).unwrap();
        assert_eq!(reread, spec);
    }

    #[test]
    fn every_kind_parses_with_its_parameters_and_round_trips() {
        let cases = [
            (json!("random"), Plan::Random),
            (json!({"kind": "easy_to_hard", "budget": 0.5}), Plan::EasyToHard),
            (json!({"kind": "hard_to_easy", "budget": "0.5"}), Plan::HardToEasy),
            (json!({"kind": "spaced_repetition", "budget": 0.5, "source_run": 7}), Plan::SpacedRepetition { source_run: SourceRuns::one(7) }),
            (json!({"kind": "leitner", "budget": 0.5}), Plan::Leitner { decks: DEFAULT_DECKS }),
            (json!({"kind": "rbf", "budget": 0.5, "nu": 0.8}), Plan::Rbf { nu: 0.8, kernel: RbfKernel::Gaussian, due_only: false }),
            (
                json!({"kind": "rbf", "budget": 1, "nu": "0.8", "kernel": "laplace", "due_only": "on"}),
                Plan::Rbf { nu: 0.8, kernel: RbfKernel::Laplace, due_only: true },
            ),
            (
                json!({"kind": "prune", "budget": 0.5, "source_run": "3", "score": "forgetting_events", "keep": "bottom"}),
                Plan::Prune { source_run: SourceRuns::one(3), score: SampleScore::ForgettingEvents, keep: Keep::Bottom },
            ),
        ];
        for (request, plan) in cases {
            let spec = parse(request.clone(), json!({})).unwrap_or_else(|e| panic!("{request}: {e}"));
            assert_eq!(spec.sampling.plan, plan);
            // A subset schedule measures in a full pass unless told otherwise.
            let expected = if spec.sampling.shows_subset() { Measure::FullPass } else { Measure::InBatch };
            assert_eq!(spec.measure, expected, "{request}");
            let stored: ExperimentSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
            assert_eq!(stored, spec);
        }
        // An RbF spec stored before kernels and due_only existed reads as it ran: Gaussian, at
        // the matched budget.
        let stored: Sampling = serde_json::from_value(json!({"budget": 0.5, "kind": "rbf", "nu": 0.9})).unwrap();
        assert_eq!(stored.plan, Plan::Rbf { nu: 0.9, kernel: RbfKernel::Gaussian, due_only: false });
        assert_eq!(stored.to_string(), "rbf at budget 0.5");
        let due = Sampling { budget: 1.0, plan: Plan::Rbf { nu: 0.9, kernel: RbfKernel::Cosine, due_only: true } };
        assert!(due.shows_subset() && due.shows_fewer());
        assert_eq!(due.to_string(), "rbf at budget 1, cosine kernel, due samples only");
        let errors = parse(json!({"kind": "rbf", "budget": 0.5, "kernel": "bell", "due_only": "maybe"}), json!({})).unwrap_err();
        assert!(errors.get("sampling.kernel").unwrap().contains("gaussian, laplace, linear, cosine, quadratic, secant"));
        assert!(errors.get("sampling.due_only").unwrap().contains("true or false"));
        let leitner = parse(json!({"kind": "leitner", "budget": 0.25, "decks": 3}), json!({})).unwrap().sampling;
        assert_eq!(serde_json::to_value(&leitner).unwrap(), json!({"budget": 0.25, "kind": "leitner", "decks": 3}));
    }

    #[test]
    fn shown_count_rounds_the_budget_and_keeps_at_least_one() {
        let at = |budget: f64| Sampling { budget, plan: Plan::Random };
        assert_eq!(at(0.5).shown_count(48), 24);
        assert_eq!(at(0.3).shown_count(10), 3);
        assert_eq!(at(0.25).shown_count(10), 3, "2.5 rounds up");
        assert_eq!(at(0.001).shown_count(10), 1);
        assert_eq!(at(1.0).shown_count(7), 7);
        assert_eq!(Sampling::default().shown_count(7), 7);
        assert_eq!(at(0.5).shown_count(0), 0);
    }

    #[test]
    fn an_arm_parses_on_its_own() {
        let arm = Sampling::parse(&json!({"kind": "rbf", "budget": 0.4})).unwrap();
        assert_eq!(arm, Sampling { budget: 0.4, plan: Plan::Rbf { nu: DEFAULT_NU, kernel: RbfKernel::Gaussian, due_only: false } });
        assert_eq!(arm.to_string(), "rbf at budget 0.4");
        let seeds = Sampling::parse(&json!({"kind": "prune", "budget": 0.5, "source_run": [3, 4], "score": "el2n", "keep": "bottom"})).unwrap();
        assert_eq!(seeds.to_string(), "prune at budget 0.5, keeping the bottom el2n of #3, #4");
        assert!(Sampling::parse(&json!({"kind": "leitner", "decks": 0})).unwrap_err().get("sampling.decks").is_some());
    }

    #[test]
    fn mistakes_are_named_per_key() {
        let errors = parse(json!({"kind": "prune", "budget": 0, "keep": "middle", "decks": 2}), json!({})).unwrap_err();
        assert_eq!(errors.get("sampling.budget"), Some("must be a number greater than 0 and at most 1, got 0"));
        assert!(errors.get("sampling.source_run").unwrap().contains("prune needs source_run"), "{errors}");
        assert!(errors.get("sampling.score").unwrap().contains("forgetting_events"), "{errors}");
        assert!(errors.get("sampling.keep").unwrap().contains("top, bottom"), "{errors}");
        assert_eq!(errors.get("sampling.decks"), Some("prune takes kind, budget, source_run, score, keep; remove decks"));

        let errors = parse(json!("leitnr"), json!({})).unwrap_err();
        assert!(errors.get("sampling").unwrap().starts_with("unknown sample selection \"leitnr\"; choose one of full, random"), "{errors}");
        let errors = parse(json!({"kind": "full", "budget": 0.5}), json!({})).unwrap_err();
        assert!(errors.get("sampling.budget").unwrap().contains("choose random for a subset"));
        let errors = parse(json!({"kind": "rbf", "budget": 0.5, "nu": 1}), json!({})).unwrap_err();
        assert!(errors.get("sampling.nu").unwrap().contains("below 1"));
        let errors = parse(json!({"kind": "random", "budget": 0.5}), json!({"measure": "in_batch"})).unwrap_err();
        assert!(errors.get("measure").unwrap().contains("use full_pass"), "{errors}");
        let errors = parse(json!("easy_to_hard"), json!({"warmup_epochs": 0})).unwrap_err();
        assert!(errors.get("sampling").unwrap().contains("set warmup_epochs to 1 or more"), "{errors}");
        assert!(matches!(parse(json!(5), json!({})), Err(e) if e.get("sampling").is_some()));
    }
}

/// The score names, as a message lists them.
pub fn score_names() -> String {
    SampleScore::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}
