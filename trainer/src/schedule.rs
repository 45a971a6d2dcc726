//! Training schedules (`protocol::sampling`): which samples each epoch trains on, and in what
//! order. Pure: no tch, seeded and deterministic, so every schedule is tested here in
//! milliseconds and a resumed run draws what an uninterrupted one would.
//!
//! Every fine-tuning epoch shows exactly `m = sampling.shown_count(n)` of the `n` training
//! samples (the budget matched across the arms of a study). Head-warmup epochs, and every epoch
//! of `full`, show all `n`, shuffled exactly as before schedules existed. Randomness comes from
//! the epoch's generator ([`epoch_seed`]), and ties between samples are broken by it.
//! What adapts to training (Leitner decks, RbF due epochs, last-shown epochs, the warmup loss)
//! is [`State`], saved with each checkpoint.

use protocol::sampling::{Keep, Plan, Sampling};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

/// The seed of epoch `epoch` of a run seeded `seed`: libtorch's generator (initialisation is
/// seeded with `seed` itself) and the shuffle are re-seeded from it at the start of every
/// epoch, so a run resumed from a checkpoint draws exactly what an uninterrupted one would.
pub fn epoch_seed(seed: u64, epoch: u32) -> u64 {
    // SplitMix64's finaliser of (seed, epoch): distinct epochs get unrelated streams.
    dynamics::rng::mix(seed.wrapping_add(u64::from(epoch).wrapping_mul(dynamics::rng::GOLDEN))) >> 1
}

/// What a schedule has learnt about the samples so far; a checkpoint keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The fine-tuning epoch in which each sample was last shown; 0 before its first.
    pub last_shown: Vec<u32>,
    /// Leitner: each sample's deck (0 = reviewed every epoch).
    pub decks: Vec<u8>,
    /// RbF: the fine-tuning epoch from which each sample is due again.
    pub due: Vec<u32>,
    /// Curricula: each sample's loss after the head warmup (from the eval pass at its end).
    pub warmup_loss: Option<Vec<f32>>,
    /// RbF: the kernel constant fitted at the end of the last fine-tuning epoch.
    pub rbf_tau: Option<f64>,
}

/// A schedule over one run's `n` samples.
#[derive(Debug, Clone)]
pub struct Scheduler {
    sampling: Sampling,
    n: usize,
    warmup_epochs: u32,
    finetune_epochs: u32,
    /// Spaced repetition: each sample's decay constant (missing ones filled, see [`Scheduler::new`]).
    tau: Vec<f64>,
    /// Pruning: the samples kept, ascending.
    kept: Vec<usize>,
    pub state: State,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error(
        "the {kind} schedule needs per-sample values of run {runs} for every sample; none were given (a server sends them with the lease; a local run cannot fetch them)"
    )]
    MissingSource { kind: &'static str, runs: protocol::SourceRuns },
    #[error("{got} source values for {n} samples")]
    SourceLength { got: usize, n: usize },
    #[error("the {kind} schedule needs the loss after head warmup, which was not measured (warmup_epochs is 0, or the checkpoint predates it)")]
    MissingWarmupLoss { kind: &'static str },
    #[error("a checkpointed schedule state for {got} samples does not fit this run's {n}")]
    StateLength { got: usize, n: usize },
}

impl Scheduler {
    /// A schedule for `n` samples. `source` holds the earlier run's value for each sample in
    /// manifest order when the schedule has a source run (spaced repetition: tau; pruning: the
    /// score); `seed` is the run's seed (pruning breaks ties at its cut with it).
    ///
    /// The server sends `source` already ranked (`dynamics::Score::ranked_value` under this
    /// run's never-learned policy): a sample never forgotten has tau = infinity (reviewed
    /// last), a never-learned one (under `max`) tau = -infinity (reviewed first, every epoch
    /// the budget allows), and `None` is a sample left out of the ranking (shown only when
    /// the budget reaches past every ranked one). Nothing is imputed.
    pub fn new(
        sampling: &Sampling,
        n: usize,
        seed: u64,
        warmup_epochs: u32,
        finetune_epochs: u32,
        source: Option<Vec<Option<f64>>>,
    ) -> Result<Self, ScheduleError> {
        let source = match (sampling.source(), source) {
            (Some(_), Some(values)) if values.len() != n => return Err(ScheduleError::SourceLength { got: values.len(), n }),
            (Some((runs, _)), None) => return Err(ScheduleError::MissingSource { kind: sampling.plan.kind(), runs: protocol::SourceRuns(runs.to_vec()) }),
            (_, source) => source,
        };
        let mut tau = Vec::new();
        let mut kept = Vec::new();
        match (&sampling.plan, source) {
            (Plan::SpacedRepetition { .. }, Some(values)) => {
                // NaN never comes from the server; read it as "no value" all the same.
                tau = values.iter().map(|v| v.filter(|t| !t.is_nan()).unwrap_or(f64::NAN)).collect();
            }
            (Plan::Prune { keep, .. }, Some(values)) => {
                // Ranked values may be infinite (never-learned samples at the forgotten end of
                // their score, tau of a sample never forgotten); missing ones come last
                // whichever end is kept (NaN sorts after +infinity).
                let key = |i: usize| match values[i].filter(|v| !v.is_nan()) {
                    Some(v) if *keep == Keep::Top => -v,
                    Some(v) => v,
                    None => f64::NAN,
                };
                let mut rng = StdRng::seed_from_u64(epoch_seed(seed, 0));
                kept = lowest(n, sampling.shown_count(n), &mut rng, key);
                kept.sort_unstable();
            }
            _ => {}
        }
        let state = State { last_shown: vec![0; n], decks: vec![0; n], due: vec![1; n], warmup_loss: None, rbf_tau: None };
        Ok(Scheduler { sampling: sampling.clone(), n, warmup_epochs, finetune_epochs, tau, kept, state })
    }

    /// Puts back the state a checkpoint saved.
    pub fn restore(&mut self, state: State) -> Result<(), ScheduleError> {
        if state.last_shown.len() != self.n {
            return Err(ScheduleError::StateLength { got: state.last_shown.len(), n: self.n });
        }
        self.state = state;
        Ok(())
    }

    /// The fine-tuning epoch (1-based) of run epoch `epoch`, or `None` during the head warmup.
    fn finetune_epoch(&self, epoch: u32) -> Option<u32> {
        epoch.checked_sub(self.warmup_epochs).filter(|&f| f > 0)
    }

    /// Whether epoch `epoch` shows every sample (head warmup, or `full`).
    pub fn shows_every_sample(&self, epoch: u32) -> bool {
        self.sampling.plan == Plan::Full || self.finetune_epoch(epoch).is_none()
    }

    /// The samples (manifest positions) epoch `epoch` trains on, in the order they are
    /// batched. `rng` is the epoch's generator, seeded by [`epoch_seed`].
    pub fn order(&self, epoch: u32, rng: &mut StdRng) -> Result<Vec<usize>, ScheduleError> {
        let n = self.n;
        let Some(f) = self.finetune_epoch(epoch).filter(|_| self.sampling.plan != Plan::Full) else {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(rng);
            return Ok(order);
        };
        let m = self.sampling.shown_count(n);
        let state = &self.state;
        let mut chosen = match &self.sampling.plan {
            Plan::Full => unreachable!("handled above"),
            Plan::Random => rand::seq::index::sample(rng, n, m).into_vec(),
            Plan::EasyToHard | Plan::HardToEasy => return self.curriculum(f, m, rng),
            // Lowest predicted retention exp(-age / tau) first, i.e. the largest age / tau
            // (compared as such: the exponential underflows to ties).
            Plan::SpacedRepetition { .. } => lowest(n, m, rng, |i| spaced_repetition_key(f - state.last_shown[i], self.tau[i])),
            // Due decks first, lower decks before higher ones.
            Plan::Leitner { .. } => lowest(n, m, rng, |i| {
                let deck = state.decks[i];
                let due = leitner_due(deck, f);
                f64::from(deck) + if due { 0.0 } else { 1000.0 }
            }),
            // Most overdue first; when fewer are due than the budget, those due soonest, or
            // (due_only) only the due ones, at least one.
            Plan::Rbf { due_only, .. } => {
                let mut chosen = lowest(n, m, rng, |i| f64::from(state.due[i]));
                if *due_only {
                    let due = chosen.iter().filter(|&&i| state.due[i] <= f).count();
                    chosen.truncate(due.max(1));
                }
                chosen
            }
            Plan::Prune { .. } => self.kept.clone(),
        };
        chosen.shuffle(rng);
        Ok(chosen)
    }

    /// Easy-to-hard (or hard-to-easy) at fine-tuning epoch `f`, as Hacohen & Weinshall (2019):
    /// the pacing function chooses the pool, the `P_f = m + floor((n - m)(f - 1)/(F - 1))`
    /// easiest (hardest) samples, and the epoch's `m` samples are drawn uniformly from it and
    /// batched in a random order (mini-batches uniform from the pool, different every epoch).
    /// Ranks by the loss after head warmup; ties by position. At budget 1 the pool is every
    /// sample from the first epoch on, so the order is a plain shuffle: a curriculum needs a
    /// budget below 1.
    fn curriculum(&self, f: u32, m: usize, rng: &mut StdRng) -> Result<Vec<usize>, ScheduleError> {
        let kind = self.sampling.plan.kind();
        let loss = self.state.warmup_loss.as_ref().ok_or(ScheduleError::MissingWarmupLoss { kind })?;
        let mut ranked: Vec<usize> = (0..self.n).collect();
        // NaN losses count as the hardest.
        let key = |i: usize| if loss[i].is_nan() { f32::INFINITY } else { loss[i] };
        ranked.sort_by(|&a, &b| key(a).total_cmp(&key(b)).then(a.cmp(&b)));
        if self.sampling.plan == Plan::HardToEasy {
            ranked.reverse();
        }
        let epochs = self.finetune_epochs.max(1);
        let grown = if epochs == 1 { 0 } else { (self.n - m) * (f.min(epochs) - 1) as usize / (epochs - 1) as usize };
        let pool = m + grown;
        let mut chosen: Vec<usize> = rand::seq::index::sample(rng, pool, m).into_iter().map(|rank| ranked[rank]).collect();
        chosen.shuffle(rng);
        Ok(chosen)
    }

    /// Whether [`Scheduler::observe`] needs the validation items' loss and confidence (RbF's
    /// kernel fit).
    pub fn needs_recall_items(&self) -> bool {
        matches!(self.sampling.plan, Plan::Rbf { .. })
    }

    /// Learns from the end of epoch `epoch`: `shown` are the samples it trained on, `correct`
    /// and `loss` every sample's records (manifest order), `strength` the model's accuracy
    /// (validation when the run has a validation set, else the training records'), and
    /// `recall_items` the loss and confidence (probability of the true class) of the items
    /// RbF fits its kernel to: the validation set's, or the training records' when the run has
    /// none.
    pub fn observe(&mut self, epoch: u32, shown: &[usize], correct: &[u8], loss: &[f32], strength: f64, recall_items: Option<(&[f32], &[f32])>) {
        let Some(f) = self.finetune_epoch(epoch) else { return };
        match self.sampling.plan {
            Plan::Leitner { decks } => {
                let top = decks.saturating_sub(1).min(u32::from(u8::MAX)) as u8;
                for &i in shown {
                    let deck = &mut self.state.decks[i];
                    *deck = if correct[i] == 1 { (*deck + 1).min(top) } else { deck.saturating_sub(1) };
                }
            }
            Plan::Rbf { nu, kernel, .. } => {
                // Amiri et al.: tau from the items recalled with confidence >= nu (closed
                // form, dynamics::rbf); a recalled sample waits as long as its predicted
                // recall stays >= nu, one not recalled stays due (at the latest next epoch).
                // Without items to fit (none given, or none recalled) the last tau stays.
                let widen = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
                let fitted =
                    recall_items.and_then(|(items_loss, confidence)| dynamics::rbf::fit_tau(kernel, &widen(items_loss), &widen(confidence), strength, nu));
                let tau = fitted.or(self.state.rbf_tau).unwrap_or(1.0);
                self.state.rbf_tau = Some(tau);
                let longest = self.finetune_epochs.max(1);
                for &i in shown {
                    self.state.due[i] = if correct[i] == 1 {
                        f + dynamics::rbf::delay(kernel, f64::from(loss[i]), strength, tau, nu, longest)
                    } else {
                        self.state.due[i].min(f + 1)
                    };
                }
                let due_next = self.state.due.iter().filter(|&&d| d <= f + 1).count();
                tracing::info!(
                    tau,
                    fitted = fitted.is_some(),
                    due_next,
                    samples = self.n,
                    "rbf after fine-tuning epoch {f}: tau {tau:.4}, {due_next} of {} due next epoch",
                    self.n
                );
            }
            _ => {}
        }
        for &i in shown {
            self.state.last_shown[i] = f;
        }
    }

    /// The loss of every sample after the head warmup, which the curricula rank by.
    pub fn observe_warmup_loss(&mut self, loss: &[f32]) {
        self.state.warmup_loss = Some(loss.to_vec());
    }
}

/// Static spaced repetition's order key (lowest first) for a sample last shown `age` epochs
/// ago with decay constant `tau`: `-age / tau`, the exponent of its predicted retention
/// `exp(-age / tau)`. `tau <= 0` (forgotten at once: never learned, under `max`) comes before
/// every other sample, `tau = infinity` (never forgotten) after every finite one, and a
/// sample without a value (NaN) after all of them.
pub fn spaced_repetition_key(age: u32, tau: f64) -> f64 {
    match tau {
        t if t.is_nan() => f64::INFINITY,
        t if t <= 0.0 => f64::NEG_INFINITY,
        t => -f64::from(age.max(1)) / t,
    }
}

/// Whether Leitner deck `deck` is reviewed in fine-tuning epoch `f`: every `2^deck` epochs,
/// i.e. when `f` is a multiple of `2^deck` (deck 0 every epoch, deck 1 every second, ...).
pub fn leitner_due(deck: u8, f: u32) -> bool {
    f % (1u32 << deck.min(31)) == 0
}

/// The `m` of `n` samples with the lowest `key`, ties broken by a draw from `rng`.
fn lowest(n: usize, m: usize, rng: &mut StdRng, key: impl Fn(usize) -> f64) -> Vec<usize> {
    let mut keyed: Vec<(f64, u64, usize)> = (0..n).map(|i| (key(i), rng.next_u64(), i)).collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    keyed.into_iter().take(m).map(|(_, _, i)| i).collect()
}

/// One bit per sample, set for the samples shown (`protocol::pack::pack_bits`).
pub fn shown_bits(n: usize, shown: &[usize]) -> Vec<u8> {
    let mut mask = vec![false; n];
    for &i in shown {
        mask[i] = true;
    }
    protocol::pack::pack_bits(&mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::sampling::SampleScore;
    use std::collections::BTreeSet;

    fn rng(epoch: u32) -> StdRng {
        StdRng::seed_from_u64(epoch_seed(11, epoch))
    }

    fn sampling(budget: f64, plan: Plan) -> Sampling {
        Sampling { budget, plan }
    }

    /// Every schedule, each with what it needs, over `n` samples after one warmup epoch.
    fn every_schedule(n: usize, budget: f64, finetune_epochs: u32) -> Vec<Scheduler> {
        let values: Vec<Option<f64>> = (0..n).map(|i| if i % 7 == 3 { None } else { Some(1.0 + (i * 37 % n) as f64 / 10.0) }).collect();
        let plans = [
            Plan::Random,
            Plan::EasyToHard,
            Plan::HardToEasy,
            Plan::SpacedRepetition { source_run: protocol::SourceRuns::one(1) },
            Plan::Leitner { decks: 4 },
            Plan::Rbf { nu: 0.9, kernel: protocol::RbfKernel::Gaussian, due_only: false },
            Plan::Prune { source_run: protocol::SourceRuns::one(1), score: SampleScore::ForgettingEvents, keep: Keep::Top },
            Plan::Prune { source_run: protocol::SourceRuns::one(1), score: SampleScore::ForgettingEvents, keep: Keep::Bottom },
        ];
        plans
            .into_iter()
            .map(|plan| {
                let sampling = sampling(budget, plan);
                let source = sampling.source().map(|_| values.clone());
                let mut scheduler = Scheduler::new(&sampling, n, 11, 1, finetune_epochs, source).unwrap();
                scheduler.observe_warmup_loss(&(0..n).map(|i| (i * 53 % n) as f32 / 7.0).collect::<Vec<_>>());
                scheduler
            })
            .collect()
    }

    #[test]
    fn every_schedule_shows_exactly_the_budget_each_fine_tuning_epoch() {
        let (n, epochs) = (103, 9);
        // round(0.37 * 103) = round(38.11) = 38 samples per fine-tuning epoch.
        for mut scheduler in every_schedule(n, 0.37, epochs) {
            let kind = scheduler.sampling.plan.kind();
            for epoch in 1..=epochs + 1 {
                let order = scheduler.order(epoch, &mut rng(epoch)).unwrap();
                let distinct: BTreeSet<usize> = order.iter().copied().collect();
                let expected = if epoch == 1 { n } else { 38 };
                assert_eq!((order.len(), distinct.len()), (expected, expected), "{kind}, epoch {epoch}");
                assert!(order.iter().all(|&i| i < n));
                // Some right, some wrong, losses spread, as a real epoch would have.
                let correct: Vec<u8> = (0..n).map(|i| u8::from((i + epoch as usize) % 3 != 0)).collect();
                let loss: Vec<f32> = (0..n).map(|i| 0.05 + (i % 11) as f32 / 5.0).collect();
                scheduler.observe(epoch, &order, &correct, &loss, 0.7, None);
            }
        }
    }

    #[test]
    fn schedules_are_reproducible_from_the_seed() {
        for (a, b) in every_schedule(40, 0.5, 3).into_iter().zip(every_schedule(40, 0.5, 3)) {
            for epoch in 1..=4 {
                assert_eq!(a.order(epoch, &mut rng(epoch)).unwrap(), b.order(epoch, &mut rng(epoch)).unwrap());
            }
        }
        let random = Scheduler::new(&sampling(0.5, Plan::Random), 40, 11, 0, 3, None).unwrap();
        assert_ne!(random.order(1, &mut rng(1)).unwrap(), random.order(2, &mut rng(2)).unwrap(), "epochs draw afresh");
    }

    #[test]
    fn full_and_head_warmup_shuffle_every_sample_as_before_schedules() {
        let mut before: Vec<i64> = (0..30).collect();
        before.shuffle(&mut rng(1));
        let before: Vec<usize> = before.into_iter().map(|i| i as usize).collect();
        let full = Scheduler::new(&Sampling::default(), 30, 11, 0, 3, None).unwrap();
        assert_eq!(full.order(1, &mut rng(1)).unwrap(), before);
        let leitner = Scheduler::new(&sampling(0.5, Plan::Leitner { decks: 3 }), 30, 11, 2, 3, None).unwrap();
        assert_eq!(leitner.order(1, &mut rng(1)).unwrap(), before, "head warmup shows everything");
        assert!(leitner.shows_every_sample(2) && !leitner.shows_every_sample(3));
    }

    #[test]
    fn random_shows_samples_about_equally_often() {
        let (n, epochs) = (50, 400);
        let scheduler = Scheduler::new(&sampling(0.2, Plan::Random), n, 11, 0, epochs, None).unwrap();
        let mut shown = vec![0u32; n];
        for epoch in 1..=epochs {
            for i in scheduler.order(epoch, &mut rng(epoch)).unwrap() {
                shown[i] += 1;
            }
        }
        // Each sample: Binomial(400, 0.2), mean 80, sd 8; 5 sd either side.
        assert!(shown.iter().all(|&c| (40..=120).contains(&c)), "{shown:?}");
    }

    #[test]
    fn curricula_grow_their_pool_from_one_end_and_batch_it_uniformly() {
        let n = 20;
        // Warmup losses: sample i has loss (i * 7) % 20, a permutation of 0..20.
        let loss: Vec<f32> = (0..n).map(|i| ((i * 7) % n) as f32).collect();
        let rank_of = |i: usize| loss[i] as usize;
        for plan in [Plan::EasyToHard, Plan::HardToEasy] {
            let easy_first = plan == Plan::EasyToHard;
            let mut scheduler = Scheduler::new(&sampling(0.25, plan.clone()), n, 11, 1, 5, None).unwrap();
            assert_eq!(scheduler.order(2, &mut rng(2)), Err(ScheduleError::MissingWarmupLoss { kind: scheduler.sampling.plan.kind() }));
            scheduler.observe_warmup_loss(&loss);
            for f in 1..=5u32 {
                let order = scheduler.order(f + 1, &mut rng(f + 1)).unwrap();
                // m = 5; pool P_f = 5 + 15 (f - 1) / 4 -> 5, 8, 12, 16, 20.
                let pool = [5, 8, 12, 16, 20][f as usize - 1];
                let mut ranks: Vec<usize> = order.iter().map(|&i| if easy_first { rank_of(i) } else { n - 1 - rank_of(i) }).collect();
                assert_eq!(ranks.len(), 5);
                assert!(ranks.iter().all(|&r| r < pool), "epoch {f}: ranks {ranks:?} outside the pool of {pool}");
                if f == 1 {
                    ranks.sort_unstable();
                    assert_eq!(ranks, vec![0, 1, 2, 3, 4], "the first epoch shows the {} five", if easy_first { "easiest" } else { "hardest" });
                }
            }
            // Batched in a random order, not easiest first (issue 22, item 2): over seeds the
            // first sample shown in epoch 1 is any of the pool's five.
            let firsts: std::collections::BTreeSet<usize> = (0..40).map(|seed| scheduler.order(2, &mut rng(seed)).unwrap()[0]).collect();
            assert_eq!(firsts.len(), 5, "{plan:?}: the first sample shown, over 40 seeds: {firsts:?}");
        }
        // At budget 1 every epoch shows every sample, in an order that changes with the epoch
        // (before, sorted by the warmup loss: the same mini-batches every epoch).
        let mut scheduler = Scheduler::new(&sampling(1.0, Plan::EasyToHard), n, 11, 1, 5, None).unwrap();
        scheduler.observe_warmup_loss(&loss);
        let orders: Vec<Vec<usize>> = (2..=6).map(|epoch| scheduler.order(epoch, &mut rng(epoch)).unwrap()).collect();
        for order in &orders {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        }
        assert!(orders.windows(2).all(|w| w[0] != w[1]), "the same order in two epochs");
    }

    #[test]
    fn spaced_repetition_reviews_short_decay_constants_more_often() {
        // tau: samples 0-1 forget fast (1), 2-5 slowly (8), 6 is left out of the ranking.
        let tau = vec![Some(1.0), Some(1.0), Some(8.0), Some(8.0), Some(8.0), Some(8.0), None];
        let sampling = sampling(2.0 / 7.0, Plan::SpacedRepetition { source_run: protocol::SourceRuns::one(4) });
        assert_eq!(
            Scheduler::new(&sampling, 7, 11, 0, 8, None).unwrap_err(),
            ScheduleError::MissingSource { kind: "spaced_repetition", runs: protocol::SourceRuns::one(4) }
        );
        let mut scheduler = Scheduler::new(&sampling, 7, 11, 0, 8, Some(tau)).unwrap();
        assert!(scheduler.tau[6].is_nan(), "nothing is imputed");
        let mut shown = [0u32; 7];
        for f in 1..=8 {
            let order = scheduler.order(f, &mut rng(f)).unwrap();
            if f == 1 {
                // Every age is 1: retention exp(-1/tau) is lowest for tau = 1.
                assert_eq!(order.iter().copied().collect::<BTreeSet<_>>(), BTreeSet::from([0, 1]));
            }
            for &i in &order {
                shown[i] += 1;
            }
            scheduler.observe(f, &order, &[1; 7], &[0.1; 7], 0.9, None);
        }
        // Epoch f: 0 and 1 have age 1 (retention exp(-1) = 0.37), the others age f
        // (exp(-f/8), above 0.37 until f = 8, where all seven tie and a draw decides).
        assert!(shown[0] >= 7 && shown[1] >= 7, "{shown:?}");
        assert!(shown[2..6].iter().all(|&c| c <= 1), "{shown:?}");
        assert_eq!(shown[6], 0, "a sample without a value waits behind every ranked one");
        assert_eq!(shown.iter().sum::<u32>(), 16);
    }

    /// Audit finding (issue 17, item 2): every sample without a fitted tau used to get the
    /// median tau, so never-forgotten samples were reviewed like average ones and
    /// never-learned ones were not reviewed first. Here the source run's ranked taus: two
    /// never learned (-inf, under `max`), two forgotten quickly (2), two slowly (6), four
    /// never forgotten (+inf).
    #[test]
    fn spaced_repetition_reviews_never_learned_first_and_never_forgotten_last() {
        let inf = f64::INFINITY;
        let tau = vec![Some(-inf), Some(-inf), Some(2.0), Some(2.0), Some(6.0), Some(6.0), Some(inf), Some(inf), Some(inf), Some(inf)];
        let sampling = sampling(0.4, Plan::SpacedRepetition { source_run: protocol::SourceRuns::one(4) });
        let mut scheduler = Scheduler::new(&sampling, 10, 11, 0, 12, Some(tau)).unwrap();
        let mut shown = [0u32; 10];
        for f in 1..=12 {
            let order = scheduler.order(f, &mut rng(f)).unwrap();
            assert!(order.contains(&0) && order.contains(&1), "epoch {f}: never-learned samples are reviewed every epoch: {order:?}");
            for &i in &order {
                shown[i] += 1;
            }
            scheduler.observe(f, &order, &[1; 10], &[0.1; 10], 0.9, None);
        }
        // Two places a epoch go to the forgotten: tau 2 more often than tau 6, and the
        // never-forgotten samples only once every finite tau is long overdue (never here).
        assert!(shown[2] > shown[4] && shown[3] > shown[5], "{shown:?}");
        assert!(shown[6..].iter().all(|&c| c == 0), "never-forgotten samples are reviewed last: {shown:?}");
        assert_eq!(spaced_repetition_key(3, inf), -0.0);
        assert!(spaced_repetition_key(3, 100.0) < spaced_repetition_key(50, inf));
        assert!(spaced_repetition_key(1, -inf) < spaced_repetition_key(1000, 1e-9));
    }

    #[test]
    fn leitner_decks_are_reviewed_every_two_to_the_k_epochs() {
        for deck in 0..4u8 {
            let due: Vec<u32> = (1..=16).filter(|&f| leitner_due(deck, f)).collect();
            let period = 1u32 << deck;
            assert_eq!(due, (1..=16 / period).map(|k| k * period).collect::<Vec<_>>(), "deck {deck}");
        }
        // Decks of 8 samples; 4 shown per epoch.
        let mut scheduler = Scheduler::new(&sampling(0.5, Plan::Leitner { decks: 4 }), 8, 11, 0, 8, None).unwrap();
        scheduler.state.decks = vec![2, 2, 1, 1, 0, 0, 3, 1];
        // Epoch 1: only deck 0 is due (4, 5); the other two places go to the lowest deck not
        // due (deck 1: two of 2, 3, 7).
        let first: BTreeSet<usize> = scheduler.order(1, &mut rng(1)).unwrap().into_iter().collect();
        assert!(first.is_superset(&BTreeSet::from([4, 5])) && first.iter().filter(|i| [2, 3, 7].contains(i)).count() == 2, "{first:?}");
        // Epoch 4: decks 0, 1 and 2 are due (7 samples), deck 3 is not; lower decks first:
        // 4 and 5, then two of 2, 3 and 7.
        let fourth: BTreeSet<usize> = scheduler.order(4, &mut rng(4)).unwrap().into_iter().collect();
        assert!(fourth.is_superset(&BTreeSet::from([4, 5])) && fourth.iter().filter(|i| [2, 3, 7].contains(i)).count() == 2, "{fourth:?}");
        // Decks 2 (samples 0, 1, 6, 7) and 3 (the rest): in epoch 8 both are due and deck 2
        // comes first; in epoch 4 only deck 2 is due.
        scheduler.state.decks = vec![2, 2, 3, 3, 3, 3, 2, 2];
        for f in [4, 8] {
            let shown: BTreeSet<usize> = scheduler.order(f, &mut rng(f)).unwrap().into_iter().collect();
            assert_eq!(shown, BTreeSet::from([0, 1, 6, 7]), "epoch {f}");
        }
    }

    #[test]
    fn leitner_promotes_on_correct_and_demotes_on_error() {
        // Three decks (0, 1, 2), every sample shown every epoch (budget 1).
        let mut scheduler = Scheduler::new(&sampling(1.0, Plan::Leitner { decks: 3 }), 4, 11, 0, 4, None).unwrap();
        let all = [0, 1, 2, 3];
        // Rows are epochs, columns samples: 0 always right; 1 right, right, wrong; 2 always
        // wrong; 3 right, wrong, right.
        let correct = [[1, 1, 0, 1], [1, 1, 0, 0], [1, 0, 0, 1]];
        let expected = [[1, 1, 0, 1], [2, 2, 0, 0], [2, 1, 0, 1]];
        for (f, (correct, decks)) in correct.iter().zip(expected).enumerate() {
            scheduler.observe(f as u32 + 1, &all, correct, &[0.5; 4], 0.5, None);
            assert_eq!(scheduler.state.decks, decks, "after epoch {}", f + 1);
        }
        // A sample not shown keeps its deck whatever its record says.
        scheduler.observe(4, &[0], &[0, 0, 0, 0], &[0.5; 4], 0.5, None);
        assert_eq!(scheduler.state.decks, [1, 1, 0, 1]);
        assert_eq!(scheduler.state.last_shown, [4, 3, 3, 3]);
    }

    fn rbf(budget: f64, due_only: bool, n: usize) -> Scheduler {
        Scheduler::new(&sampling(budget, Plan::Rbf { nu: 0.5, kernel: protocol::RbfKernel::Gaussian, due_only }), n, 11, 0, 10, None).unwrap()
    }

    #[test]
    fn rbf_fits_tau_to_recalled_validation_items_and_reschedules_only_recalled_samples() {
        use dynamics::rbf::{Kernel, delay, kernel_x};
        // Validation items recalled exactly as the Gaussian kernel predicts with tau = 3 at
        // strength 0.8, and one below nu that the fit leaves out.
        let val_loss = [0.1f32, 0.2, 0.3, 2.0];
        let mut confidence: Vec<f32> = val_loss.iter().map(|&d| Kernel::Gaussian.recall(kernel_x(f64::from(d), 1.0, 0.8), 3.0) as f32).collect();
        confidence[3] = 0.1;
        // Six samples, three shown per epoch. All start due at epoch 1.
        let mut scheduler = rbf(0.5, false, 6);
        let first = scheduler.order(1, &mut rng(1)).unwrap();
        assert_eq!(first.len(), 3);
        let loss = [0.05f32, 0.02, 0.04, 0.05, 0.02, 0.03];
        // Of the three shown, the first two recalled and the third not.
        let mut correct = [1u8; 6];
        correct[first[2]] = 0;
        scheduler.observe(1, &first, &correct, &loss, 0.8, Some((&val_loss, &confidence)));
        let tau = scheduler.state.rbf_tau.unwrap();
        assert!((tau - 3.0).abs() < 1e-5, "tau from the recalled validation items: {tau}");
        for i in 0..6 {
            let expected = if first.contains(&i) && correct[i] == 1 { 1 + delay(Kernel::Gaussian, f64::from(loss[i]), 0.8, tau, 0.5, 10) } else { 1 };
            assert_eq!(scheduler.state.due[i], expected, "sample {i}: recalled ones wait, the others stay due");
        }
        assert!(first[..2].iter().any(|&i| scheduler.state.due[i] > 2), "a recalled sample with a small loss waits more than an epoch");
        // Epoch 2: the samples still due (never shown, or shown and not recalled) come first.
        let still_due: BTreeSet<usize> = (0..6).filter(|&i| scheduler.state.due[i] <= 2).collect();
        let second: BTreeSet<usize> = scheduler.order(2, &mut rng(2)).unwrap().into_iter().collect();
        assert_eq!(second.len(), 3);
        assert!(second.is_subset(&still_due) || still_due.is_subset(&second), "{second:?} vs due {still_due:?}");
        // No recalled validation item: the last tau stays.
        scheduler.observe(2, &Vec::from_iter(second), &[1; 6], &loss, 0.8, Some((&[1.0], &[0.2])));
        assert_eq!(scheduler.state.rbf_tau, Some(tau));
    }

    #[test]
    fn rbf_on_due_samples_only_trains_on_fewer_as_samples_are_recalled() {
        let n = 20;
        let mut scheduler = rbf(1.0, true, n);
        let all = scheduler.order(1, &mut rng(1)).unwrap();
        assert_eq!(all.len(), n, "every sample is due at first");
        // Half recalled with a small loss (they wait), half not (they stay due).
        let correct: Vec<u8> = (0..n).map(|i| u8::from(i % 2 == 0)).collect();
        let loss = vec![0.01f32; n];
        let val = ([0.05f32, 0.1], [0.95f32, 0.9]);
        scheduler.observe(1, &all, &correct, &loss, 0.9, Some((&val.0, &val.1)));
        let second = scheduler.order(2, &mut rng(2)).unwrap();
        assert_eq!(second.iter().copied().collect::<BTreeSet<_>>(), (0..n).filter(|i| i % 2 == 1).collect(), "only the due samples");
        // Everything recalled: nothing is due at epoch 3, and the epoch trains on the one due soonest.
        scheduler.observe(2, &second, &vec![1; n], &loss, 0.9, Some((&val.0, &val.1)));
        let third = scheduler.order(3, &mut rng(3)).unwrap();
        assert_eq!(third.len(), 1);
        // At the matched budget the same state fills the epoch with those due soonest.
        let mut matched = rbf(1.0, false, n);
        matched.state = scheduler.state.clone();
        assert_eq!(matched.order(3, &mut rng(3)).unwrap().len(), n);
    }

    #[test]
    fn pruning_keeps_the_top_or_bottom_fraction_every_epoch() {
        // Scores of 10 samples; sample 8 has none. Budget 0.3 keeps 3.
        let scores = vec![Some(4.0), Some(9.0), Some(1.0), Some(7.0), Some(0.0), Some(8.0), Some(2.0), Some(3.0), None, Some(5.0)];
        let prune = |keep| sampling(0.3, Plan::Prune { source_run: protocol::SourceRuns::one(2), score: SampleScore::ForgettingEvents, keep });
        let top = Scheduler::new(&prune(Keep::Top), 10, 11, 0, 4, Some(scores.clone())).unwrap();
        let bottom = Scheduler::new(&prune(Keep::Bottom), 10, 11, 0, 4, Some(scores.clone())).unwrap();
        for f in 1..=4 {
            let kept: BTreeSet<usize> = top.order(f, &mut rng(f)).unwrap().into_iter().collect();
            assert_eq!(kept, BTreeSet::from([1, 3, 5]), "scores 9, 7, 8");
            let kept: BTreeSet<usize> = bottom.order(f, &mut rng(f)).unwrap().into_iter().collect();
            assert_eq!(kept, BTreeSet::from([2, 4, 6]), "scores 1, 0, 2");
        }
        // Ties at the cut: a seeded draw, the same in every epoch and every rerun.
        let tied = vec![Some(1.0); 10];
        let a = Scheduler::new(&prune(Keep::Top), 10, 11, 0, 4, Some(tied.clone())).unwrap();
        let b = Scheduler::new(&prune(Keep::Top), 10, 11, 0, 4, Some(tied)).unwrap();
        assert_eq!(a.kept, b.kept);
        assert_eq!(a.kept.len(), 3);
        // Missing scores are kept only when nothing else is left.
        let mostly_missing = vec![None, Some(1.0), None, None, Some(2.0), None, None, None, None, None];
        let c = Scheduler::new(&prune(Keep::Bottom), 10, 11, 0, 4, Some(mostly_missing)).unwrap();
        assert!(c.kept.contains(&1) && c.kept.contains(&4));
        assert_eq!(Scheduler::new(&prune(Keep::Top), 10, 11, 0, 4, Some(vec![None; 9])).unwrap_err(), ScheduleError::SourceLength { got: 9, n: 10 });
    }

    /// Audit finding (issue 17, item 1): never-learned samples reached the pruner with 0
    /// forgetting events, as if unforgettable, and unforgettable samples' tau (infinite)
    /// counted as missing. The server now sends ranked values (`dynamics::Score::ranked_value`).
    #[test]
    fn pruning_ranks_never_learned_as_most_forgotten_and_unforgettable_tau_as_longest() {
        let inf = f64::INFINITY;
        // Forgetting events: samples 0 and 1 never learned (ranked +inf under max), 2-4
        // forgotten 3, 2, 1 times, 5-9 unforgettable (0). Keeping the bottom 50 % (dropping
        // the most forgotten, as a "keep the easy samples" arm) must drop the never-learned.
        let events = vec![Some(inf), Some(inf), Some(3.0), Some(2.0), Some(1.0), Some(0.0), Some(0.0), Some(0.0), Some(0.0), Some(0.0)];
        let prune = |score, keep| sampling(0.5, Plan::Prune { source_run: protocol::SourceRuns::one(2), score, keep });
        let bottom = Scheduler::new(&prune(SampleScore::ForgettingEvents, Keep::Bottom), 10, 11, 0, 4, Some(events.clone())).unwrap();
        assert_eq!(bottom.kept, vec![5, 6, 7, 8, 9]);
        let top = Scheduler::new(&prune(SampleScore::ForgettingEvents, Keep::Top), 10, 11, 0, 4, Some(events)).unwrap();
        assert_eq!(top.kept, vec![0, 1, 2, 3, 4], "Toneva et al. keep the most forgotten, never-learned first");
        // tau: 0-4 unforgettable (+inf), 5-9 forgotten with tau 1..5. Keeping the top half of
        // tau keeps the samples retained longest: the unforgettable ones.
        let tau = vec![Some(inf), Some(inf), Some(inf), Some(inf), Some(inf), Some(1.0), Some(2.0), Some(3.0), Some(4.0), Some(5.0)];
        let longest = Scheduler::new(&prune(SampleScore::Tau, Keep::Top), 10, 11, 0, 4, Some(tau)).unwrap();
        assert_eq!(longest.kept, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn shown_bits_mark_the_shown_samples() {
        assert_eq!(shown_bits(10, &[9, 0, 3]), vec![0b0000_1001, 0b0000_0010]);
        let state = State { last_shown: vec![1, 2], decks: vec![0, 1], due: vec![3, 4], warmup_loss: Some(vec![0.5, 1.5]), rbf_tau: Some(0.2) };
        let back: State = serde_json::from_value(serde_json::to_value(&state).unwrap()).unwrap();
        assert_eq!(back, state);
        let mut scheduler = Scheduler::new(&Sampling::default(), 3, 0, 0, 1, None).unwrap();
        assert_eq!(scheduler.restore(state), Err(ScheduleError::StateLength { got: 2, n: 3 }));
    }
}
