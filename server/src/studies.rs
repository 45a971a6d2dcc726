//! Studies: a grid of runs launched together (`protocol::study`), followed as one, and
//! reported as one: the first arm's runs compared in the form of the findings of docs/design.md, and
//! every arm's accuracy and macro-F1 over seeds against the `random` arm.

use std::collections::HashMap;

use protocol::study::{
    self, ArmCurve, ArmReport, CurvePoint, Finding, Interval, StudyDetail, StudyLaunched, StudyPlan, StudyReport, StudyRequest, StudyRun, StudySummary,
};
use protocol::{CompareQuery, Comparison, ExperimentSpec, Failure, FieldErrors, Phase, RunQuery, RunStatus, Sampling};
use serde_json::{Map, Value, json};
use sqlx::Row;

use crate::auth::{Owned, check_may_change};
use crate::db::internal;
use crate::service::Service;
use protocol::auth::Identity;

/// The fields of a study's runs that come from its lists, not from `base`.
fn study_field(field: &str, run: &study::PlannedRun) -> String {
    match field {
        "arch" | "weights" => "archs".to_owned(),
        "seed" => "seeds".to_owned(),
        f if f == "sampling" || f.starts_with("sampling.") => format!("arms[{}]", run.arm),
        f => format!("base.{f}"),
    }
}

/// Cancels every run of study `id` that has not finished; their ids.
pub async fn cancel_study(service: &Service, queue: &crate::queue::Queue, id: i64, who: &Identity) -> Result<Vec<i64>, Failure> {
    check_may_change(&service.pool, who, Owned::Study(id)).await?;
    let runs = service.study_active_runs(id).await?;
    for run in &runs {
        queue.cancel(*run).await?;
    }
    Ok(runs)
}

fn interval(values: &[f64]) -> Option<Interval> {
    dynamics::mean_interval(values, 0.95).map(|m| Interval { mean: m.mean, half_width: m.half_width.is_finite().then_some(m.half_width), n: m.n as u64 })
}

impl Service {
    /// `POST /studies`: checks every run of the grid as `POST /runs` would, then queues them all.
    pub async fn launch_study(&self, request: StudyRequest, who: &Identity) -> Result<StudyLaunched, Failure> {
        crate::auth::check_may_launch(who)?;
        let refused = |errors: FieldErrors| {
            let count = errors.0.len();
            Failure::invalid(format!("the study was not queued: {count} field{} to fix", if count == 1 { "" } else { "s" }), errors)
        };
        let plan = request.plan().map_err(refused)?;
        let datasets = self.registry.list().await?;
        // Every run checked; a field's first message is kept (runs share most fields).
        let mut errors = FieldErrors::default();
        for run in &plan.runs {
            if let Err(found) = ExperimentSpec::parse(&run.request, &datasets) {
                for (field, message) in found.0 {
                    errors.add(&study_field(&field, run), format!("{} seed {}: {message}", run.arch, run.seed));
                }
            }
            if let Err(found) = run.request.queueing() {
                for (field, message) in found.0 {
                    errors.add(&format!("base.{field}"), message);
                }
            }
        }
        if !errors.is_empty() {
            return Err(refused(errors));
        }
        self.check_quota(who, plan.runs.len()).await?;
        let dataset = plan.runs.first().and_then(|r| r.request.dataset.as_ref()).and_then(Value::as_str).unwrap_or_default().to_owned();
        let stored = json!({"archs": plan.archs, "seeds": plan.seeds, "arms": plan.arms, "base": plan.base});
        let id: i64 = sqlx::query_scalar("INSERT INTO studies (name, dataset, plan, owner) VALUES (?, ?, ?, ?) RETURNING id")
            .bind(&plan.name)
            .bind(&dataset)
            .bind(stored.to_string())
            .bind(&who.name)
            .fetch_one(&self.pool)
            .await
            .map_err(internal)?;
        let runs = self.queue_study_runs(id, &plan.runs, who).await?;
        tracing::info!(study = id, runs = runs.len(), "study queued");
        Ok(StudyLaunched { id, runs })
    }

    /// Refuses a member `more` runs that would pass their quota of active runs, before any
    /// of a study's runs is queued.
    async fn check_quota(&self, who: &Identity, more: usize) -> Result<(), Failure> {
        if who.is_admin() {
            return Ok(());
        }
        let active = crate::service::active_runs(&self.pool, &who.name).await?;
        if active + more as u64 > self.limits.active_runs {
            return Err(crate::service::over_quota(&who.name, active, more as u64, self.limits.active_runs));
        }
        Ok(())
    }

    async fn queue_study_runs(&self, id: i64, runs: &[study::PlannedRun], who: &Identity) -> Result<Vec<i64>, Failure> {
        let mut ids = Vec::new();
        for run in runs {
            let mut request = run.request.clone();
            // The study's runs carry its tag, so the runs table finds them too.
            let mut tags = request.tags.as_ref().map(protocol::spec::parse_tags).transpose().unwrap_or_default().unwrap_or_default();
            tags.push(format!("study-{id}"));
            request.tags = Some(json!(tags));
            let launched = self.launch_in_study(request, Some((id, run.arm)), who).await?;
            ids.push(launched.id);
        }
        Ok(ids)
    }

    /// `POST /studies/{id}/seeds`: adds every architecture and arm for seeds not in the study yet.
    pub async fn extend_study(&self, id: i64, seeds: Vec<u64>, who: &Identity) -> Result<StudyLaunched, Failure> {
        check_may_change(&self.pool, who, Owned::Study(id)).await?;
        let (plan, _) = self.study_plan(id).await?;
        let new: Vec<u64> = seeds.into_iter().filter(|s| !plan.seeds.contains(s)).collect();
        if new.is_empty() {
            return Err(Failure::bad_request(format!("give seeds that study #{id} does not have yet (it has {:?})", plan.seeds)));
        }
        // The cap of a study's size holds however it grew (issue 19, item 7).
        let total = plan.archs.len() * (plan.seeds.len() + new.len()) * plan.arms.len();
        if total > study::MAX_STUDY_RUNS {
            let mut errors = FieldErrors::default();
            errors.add(
                "seeds",
                format!("{} more seed(s) would make {total} runs, more than a study holds ({}); start another study", new.len(), study::MAX_STUDY_RUNS),
            );
            return Err(Failure::invalid("no seeds were added", errors));
        }
        let runs = study::expand(&plan.base, &plan.archs, &new, &plan.arms);
        self.check_quota(who, runs.len()).await?;
        let mut stored = json!({"archs": plan.archs, "seeds": plan.seeds, "arms": plan.arms, "base": plan.base});
        let mut all = plan.seeds.clone();
        all.extend(&new);
        stored["seeds"] = json!(all);
        sqlx::query("UPDATE studies SET plan = ? WHERE id = ?").bind(stored.to_string()).bind(id).execute(&self.pool).await.map_err(internal)?;
        let ids = self.queue_study_runs(id, &runs, who).await?;
        Ok(StudyLaunched { id, runs: ids })
    }

    /// The study's stored plan and its (name, created_at, dataset).
    async fn study_plan(&self, id: i64) -> Result<(StudyPlan, (String, String, String)), Failure> {
        let row = sqlx::query("SELECT name, dataset, plan, created_at FROM studies WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(internal)?
            .ok_or_else(|| Failure::not_found(format!("no study #{id}")))?;
        let stored: Value = serde_json::from_str(row.get("plan")).map_err(internal)?;
        let plan = StudyPlan {
            name: row.get("name"),
            archs: serde_json::from_value(stored["archs"].clone()).map_err(internal)?,
            seeds: serde_json::from_value(stored["seeds"].clone()).map_err(internal)?,
            arms: serde_json::from_value(stored["arms"].clone()).map_err(internal)?,
            base: serde_json::from_value::<Map<String, Value>>(stored["base"].clone()).map_err(internal)?,
            runs: Vec::new(),
        };
        Ok((plan, (row.get("name"), row.get("created_at"), row.get("dataset"))))
    }

    pub async fn studies(&self) -> Result<Vec<StudySummary>, Failure> {
        let rows = sqlx::query(
            "SELECT s.id, s.name, s.created_at, COUNT(r.id) AS runs,
                SUM(j.status = 'succeeded') AS succeeded, SUM(j.status IN ('queued', 'running', 'analysing')) AS active,
                SUM(j.status IN ('failed', 'cancelled')) AS failed
             FROM studies s LEFT JOIN runs r ON r.study_id = s.id LEFT JOIN jobs j ON j.run_id = r.id
             GROUP BY s.id ORDER BY s.id DESC LIMIT 500",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(internal)?;
        let count = |row: &sqlx::sqlite::SqliteRow, name: &str| row.get::<Option<i64>, _>(name).unwrap_or(0) as u64;
        Ok(rows
            .iter()
            .map(|row| StudySummary {
                id: row.get("id"),
                name: row.get("name"),
                created_at: row.get("created_at"),
                runs: count(row, "runs"),
                succeeded: count(row, "succeeded"),
                active: count(row, "active"),
                failed: count(row, "failed"),
            })
            .collect())
    }

    /// The run ids of a study that have not finished.
    async fn study_active_runs(&self, id: i64) -> Result<Vec<i64>, Failure> {
        self.study_plan(id).await?;
        sqlx::query_scalar("SELECT r.id FROM runs r JOIN jobs j ON j.run_id = r.id WHERE r.study_id = ? AND j.status IN ('queued', 'running') ORDER BY r.id")
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(internal)
    }

    pub async fn study(&self, id: i64) -> Result<StudyDetail, Failure> {
        let (plan, (name, created_at, dataset)) = self.study_plan(id).await?;
        let arms_of: HashMap<i64, i64> =
            sqlx::query_as("SELECT id, study_arm FROM runs WHERE study_id = ?").bind(id).fetch_all(&self.pool).await.map_err(internal)?.into_iter().collect();
        let list = self.runs(RunQuery { study: Some(id), sort: Some("id".into()), limit: Some(1000), ..Default::default() }).await?;
        let runs: Vec<StudyRun> = list
            .runs
            .into_iter()
            .map(|run| StudyRun { arch: run.arch.clone(), seed: run.seed, arm: arms_of.get(&run.id).copied().unwrap_or(0) as usize, run })
            .collect();
        let arm_names: Vec<String> = plan.arms.iter().map(|a| Sampling::parse(a).map_or_else(|_| a.to_string(), |s| s.to_string())).collect();
        let report = self.study_report(&plan, &runs, &arm_names).await?;
        Ok(StudyDetail {
            id,
            name,
            created_at,
            dataset,
            archs: plan.archs.iter().map(|a| a.0.clone()).collect(),
            seeds: plan.seeds,
            arms: arm_names,
            runs,
            report,
        })
    }

    async fn study_report(&self, plan: &StudyPlan, runs: &[StudyRun], arm_names: &[String]) -> Result<StudyReport, Failure> {
        let done: Vec<&StudyRun> = runs.iter().filter(|r| r.run.status == RunStatus::Succeeded).collect();
        let first_arm: Vec<i64> = done.iter().filter(|r| r.arm == 0).map(|r| r.run.id).collect();
        let (comparison, comparison_note) = if first_arm.len() < 2 {
            (None, Some(format!("{} of the first arm's runs have succeeded; the findings appear from 2", first_arm.len())))
        } else {
            let query = CompareQuery { runs: first_arm.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(","), q: Some(0.1), ..Default::default() };
            match self.compare(query).await {
                Ok(comparison) => (Some(comparison), None),
                Err(failure) => (None, Some(failure.body.message)),
            }
        };
        // Final validation accuracy and macro-F1 of each finished run, and its curve.
        let mut outcome: HashMap<i64, (Option<f64>, Option<f64>, u64)> = HashMap::new();
        let mut epochs_of: HashMap<i64, Vec<EpochOutcome>> = HashMap::new();
        for run in &done {
            let epochs = self.epoch_outcomes(run.run.id).await?;
            let accuracy = epochs.last().and_then(|e| e.accuracy);
            // The last confusion matrix recorded; a fine-tuning epoch shows the schedule's budget.
            let f1 = epochs.iter().rev().find(|e| e.has_confusion).and_then(|e| e.macro_f1);
            let shown = epochs.iter().find(|e| e.phase == Phase::Finetune).map_or(0, |e| e.shown);
            outcome.insert(run.run.id, (accuracy, f1, shown));
            epochs_of.insert(run.run.id, epochs);
        }
        let mut curves = Vec::new();
        for (arm, name) in arm_names.iter().enumerate() {
            for (arch, _) in &plan.archs {
                let seeds: Vec<&[EpochOutcome]> = done.iter().filter(|r| r.arm == arm && &r.arch == arch).map(|r| epochs_of[&r.run.id].as_slice()).collect();
                if !seeds.is_empty() {
                    curves.push(ArmCurve { arm: name.clone(), arch: arch.clone(), points: curve(&seeds) });
                }
            }
        }
        let mut follows = HashMap::new();
        if let Some(c) = &comparison {
            for &run in &c.runs {
                let classes = self.classes(run).await?;
                follows.insert(
                    run,
                    ClassSimilarity {
                        pairwise: classes.forgetting_follows_confusion.and_then(|v| v.r),
                        per_class: classes.similar_forgotten_confusion.and_then(|v| v.r),
                    },
                );
            }
        }
        let findings = comparison.as_ref().map(|c| findings(c, &follows)).unwrap_or_default();
        let parsed: Vec<Option<Sampling>> = plan.arms.iter().map(|a| Sampling::parse(a).ok()).collect();
        // The reference: the random arm, paired with the arms at its budget (issue 22: the full
        // arm trains on every sample, so its difference would measure the budget).
        let random_arm = parsed.iter().position(|s| s.as_ref().is_some_and(|s| s.plan.kind() == "random"));
        let reference_budget = random_arm.and_then(|r| parsed[r].as_ref()).map(|s| s.budget);
        let reference_arm = random_arm.map(|r| arm_names[r].clone());
        // (accuracy, macro-F1) of the run of this arm, architecture and seed.
        let outcome_of = |arm: usize, arch: &str, seed: u64| {
            done.iter().find(|r| r.arm == arm && r.arch == arch && r.seed == seed).and_then(|r| outcome.get(&r.run.id)).map(|o| (o.0, o.1))
        };
        let mut arms = Vec::new();
        for (arm, name) in arm_names.iter().enumerate() {
            for (arch, _) in &plan.archs {
                let mine: Vec<&&StudyRun> = done.iter().filter(|r| r.arm == arm && &r.arch == arch).collect();
                let seeds: Vec<(u64, Option<f64>, Option<f64>)> = mine.iter().map(|r| (r.seed, outcome[&r.run.id].0, outcome[&r.run.id].1)).collect();
                // This arm minus the random arm, seed by seed, for the metric `pick` chooses.
                let paired = |pick: fn((Option<f64>, Option<f64>)) -> Option<f64>| -> Vec<f64> {
                    let matched = parsed[arm].as_ref().map(|s| s.budget) == reference_budget;
                    match random_arm.filter(|&r| r != arm && matched) {
                        Some(random) => seeds.iter().filter_map(|&(seed, acc, f1)| Some(pick((acc, f1))? - pick(outcome_of(random, arch, seed)?)?)).collect(),
                        None => Vec::new(),
                    }
                };
                arms.push(ArmReport {
                    arm: name.clone(),
                    arch: arch.clone(),
                    samples_per_epoch: mine.first().map(|r| outcome[&r.run.id].2),
                    data_fraction: interval(&mine.iter().filter_map(|r| finetune_data_fraction(&epochs_of[&r.run.id])).collect::<Vec<_>>()),
                    accuracy: interval(&seeds.iter().filter_map(|s| s.1).collect::<Vec<_>>()),
                    macro_f1: interval(&seeds.iter().filter_map(|s| s.2).collect::<Vec<_>>()),
                    accuracy_vs_random: interval(&paired(|o| o.0)),
                    macro_f1_vs_random: interval(&paired(|o| o.1)),
                    seeds,
                });
            }
        }
        Ok(StudyReport { comparison, comparison_note, reference_arm, arms, published: study::published(), findings, curves })
    }

    /// Each recorded epoch of a run: phase, validation accuracy, macro-F1 of its validation
    /// confusion matrix, and the training samples it showed (an epoch without a shown set
    /// showed every sample of the run; the count is not correlated with the row, so SQLite
    /// counts the run's samples once, not once per epoch).
    async fn epoch_outcomes(&self, run_id: i64) -> Result<Vec<EpochOutcome>, Failure> {
        let rows = sqlx::query(
            "SELECT m.epoch, m.phase, m.val_accuracy, m.val_confusion,
                s.shown_count, (SELECT COUNT(*) FROM run_samples WHERE run_id = ?1) AS samples
             FROM epoch_metrics m LEFT JOIN epoch_shown s ON s.run_id = m.run_id AND s.epoch = m.epoch WHERE m.run_id = ?1 ORDER BY m.epoch",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(internal)?;
        rows.iter()
            .map(|row| {
                let confusion: Option<Vec<u8>> = row.get("val_confusion");
                let matrix = confusion.map(|bytes| crate::analysis::confusion_matrix(&bytes)).transpose().map_err(internal)?;
                let samples: i64 = row.get("samples");
                Ok(EpochOutcome {
                    epoch: row.get::<i64, _>("epoch") as u32,
                    phase: Phase::parse(row.get("phase")).ok_or_else(|| internal("unknown phase in epoch_metrics"))?,
                    accuracy: row.get("val_accuracy"),
                    has_confusion: matrix.is_some(),
                    macro_f1: matrix.as_deref().and_then(dynamics::classes::macro_f1),
                    shown: row.get::<Option<i64>, _>("shown_count").unwrap_or(samples) as u64,
                    samples: samples as u64,
                })
            })
            .collect()
    }
}

/// What one epoch of one run scored.
#[derive(Debug, Clone)]
struct EpochOutcome {
    epoch: u32,
    phase: Phase,
    accuracy: Option<f64>,
    has_confusion: bool,
    macro_f1: Option<f64>,
    shown: u64,
    /// The run's training samples.
    samples: u64,
}

impl EpochOutcome {
    /// The fraction of the training samples this epoch trained on.
    fn data_fraction(&self) -> f64 {
        self.shown as f64 / self.samples.max(1) as f64
    }
}

/// A run's mean data fraction over its fine-tuning epochs (`None` without any).
fn finetune_data_fraction(epochs: &[EpochOutcome]) -> Option<f64> {
    let fractions: Vec<f64> = epochs.iter().filter(|e| e.phase == Phase::Finetune).map(EpochOutcome::data_fraction).collect();
    (!fractions.is_empty()).then(|| fractions.iter().sum::<f64>() / fractions.len() as f64)
}

/// An arm's curve from its seeds' epochs: at each epoch, the interval over the seeds that
/// recorded it, and the mean of their cumulative samples shown.
fn curve(seeds: &[&[EpochOutcome]]) -> Vec<CurvePoint> {
    let cumulative: Vec<Vec<u64>> = seeds
        .iter()
        .map(|epochs| {
            epochs
                .iter()
                .scan(0u64, |seen, e| {
                    *seen += e.shown;
                    Some(*seen)
                })
                .collect()
        })
        .collect();
    let last = seeds.iter().flat_map(|epochs| epochs.iter().map(|e| e.epoch)).max();
    let mut points = Vec::new();
    for epoch in 0..=last.unwrap_or(0) {
        let at: Vec<(&EpochOutcome, u64)> =
            seeds.iter().zip(&cumulative).filter_map(|(epochs, seen)| epochs.iter().position(|e| e.epoch == epoch).map(|i| (&epochs[i], seen[i]))).collect();
        let Some((first, _)) = at.first() else { continue };
        points.push(CurvePoint {
            epoch,
            phase: first.phase,
            samples_seen: at.iter().map(|(_, seen)| *seen as f64).sum::<f64>() / at.len() as f64,
            data_fraction: Some(at.iter().map(|(e, _)| e.data_fraction()).sum::<f64>() / at.len() as f64),
            accuracy: interval(&at.iter().filter_map(|(e, _)| e.accuracy).collect::<Vec<_>>()),
            macro_f1: interval(&at.iter().filter_map(|(e, _)| e.macro_f1).collect::<Vec<_>>()),
        });
    }
    points
}

/// How a finding's interval was computed, as the report names it.
const STUDENT_T: &str = "Student's t over independent values (seeds or runs)";
const JACKKNIFE: &str = "jackknife over seeds (leave one seed out; pairs share runs)";

/// the findings of docs/design.md over a comparison of the first arm's runs, each with its interval
/// and the interval's method: Student's t where each seed gives one value, the jackknife over
/// seeds (`dynamics::jackknife_over_seeds`) where the values are pairs of runs, since pairs
/// share runs. `follows` is each run's class-similarity Spearmans.
/// `published` names the paper's number for the same statistic only.
/// One run's two class-similarity statistics (`ClassReport`): forgotten-into counts against
/// confusion over class pairs, and mean forgetting against greatest confusion per class.
#[derive(Clone, Copy)]
struct ClassSimilarity {
    pairwise: Option<f64>,
    per_class: Option<f64>,
}

fn findings(c: &Comparison, follows: &HashMap<i64, ClassSimilarity>) -> Vec<Finding> {
    let members = &c.members;
    let mut archs: Vec<&str> = Vec::new();
    for m in members {
        if !archs.contains(&m.arch.as_str()) {
            archs.push(&m.arch);
        }
    }
    let pairs = |same_arch: Option<&str>| -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for i in 0..members.len() {
            for j in i + 1..members.len() {
                let keep = match same_arch {
                    Some(arch) => members[i].arch == arch && members[j].arch == arch && members[i].seed != members[j].seed,
                    None => members[i].arch != members[j].arch,
                };
                if keep {
                    out.push((i, j));
                }
            }
        }
        out
    };
    let values = |matrix: &[Vec<Option<f64>>], pairs: &[(usize, usize)]| -> Vec<f64> {
        pairs.iter().filter_map(|&(i, j)| matrix.get(i)?.get(j).copied().flatten()).collect()
    };
    // A pair-based finding: the pairs' values tagged with their runs' seeds, jackknifed.
    let paired = |matrix: &[Vec<Option<f64>>], pairs: &[(usize, usize)]| -> Option<Interval> {
        let tagged: Vec<(f64, [u64; 2])> =
            pairs.iter().filter_map(|&(i, j)| Some((matrix.get(i)?.get(j).copied().flatten()?, [members[i].seed, members[j].seed]))).collect();
        dynamics::jackknife_over_seeds(&tagged, 0.95).map(|m| Interval {
            mean: m.mean,
            half_width: m.half_width.is_finite().then_some(m.half_width),
            n: m.n as u64,
        })
    };
    let chance = format!("chance q/(2 − q) = {:.3} at q = {}", c.chance, c.q);
    let finding = |key: &str, arch: Option<&str>, value: Option<Interval>, method: &str, over: &str, note: Option<String>, published: Option<usize>| Finding {
        key: key.into(),
        arch: arch.map(str::to_owned),
        value,
        window: String::new(),
        retention: String::new(),
        method: method.into(),
        over: over.into(),
        note,
        published,
    };
    let mut out = Vec::new();
    // Cross-architecture Jaccard, one value per seed: the mean over that seed's pairs of
    // architectures (the paper's pairing), so the interval is over independent seeds.
    let cross = pairs(None);
    let mut seeds: Vec<u64> = members.iter().map(|m| m.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let per_seed: Vec<f64> = seeds
        .iter()
        .filter_map(|&seed| {
            let same_seed: Vec<(usize, usize)> = cross.iter().copied().filter(|&(i, j)| members[i].seed == seed && members[j].seed == seed).collect();
            let v = values(&c.jaccard, &same_seed);
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        })
        .collect();
    out.push(finding(
        "cross_arch_jaccard",
        None,
        interval(&per_seed),
        STUDENT_T,
        "a seed: the mean Jaccard over the pairs of architectures trained with that seed (the paper's pairing)",
        Some(chance.clone()),
        Some(0),
    ));
    // A different statistic under its own name (issue 21): the mean over every pair of runs of
    // different architectures, of any seeds, as the compare page's summary gives it.
    out.push(finding(
        "cross_arch_jaccard_all_pairs",
        None,
        paired(&c.jaccard, &cross),
        JACKKNIFE,
        "a pair of runs of different architectures, of any seeds",
        Some(format!("{chance}; {} pairs", cross.len())),
        None,
    ));
    for &arch in &archs {
        let within = pairs(Some(arch));
        let mine: Vec<&protocol::CompareMember> = members.iter().filter(|m| m.arch == arch).collect();
        let summary = c.summary.as_ref().and_then(|s| s.per_arch.iter().find(|a| a.arch == arch));
        // The paper reports no cross-seed Jaccard: no paper number beside it.
        out.push(finding("cross_seed_jaccard", Some(arch), paired(&c.jaccard, &within), JACKKNIFE, "a pair of seeds", Some(chance.clone()), None));
        let (fitted, excluded) = mine.iter().fold((0, 0), |(f, e), m| (f + m.fitted, e + m.excluded));
        out.push(finding(
            "mean_r2",
            Some(arch),
            interval(&mine.iter().filter_map(|m| m.mean_r2).collect::<Vec<_>>()),
            STUDENT_T,
            "a run (seed): the mean R² of its exponential decay fits",
            Some(format!("{fitted} traces fitted, {excluded} excluded")),
            Some(1),
        ));
        out.push(finding(
            "cross_seed_spearman",
            Some(arch),
            paired(&c.spearman, &within),
            JACKKNIFE,
            "a pair of seeds",
            Some(format!(
                "Spearman-Brown projection to the mean of its {} runs: {}",
                mine.len(),
                summary.and_then(|s| s.reliability).map_or("–".into(), |r| format!("{r:.3}"))
            )),
            Some(2),
        ));
        let of_runs = |value: fn(&protocol::CompareMember) -> Option<f64>| interval(&mine.iter().filter_map(|m| value(m)).collect::<Vec<_>>());
        let fine_tuning = "a run (seed): Spearman over its samples with a defined decay, tau fitted on the fine-tuning epochs only";
        out.push(finding(
            "warmup_spearman_rate",
            Some(arch),
            of_runs(|m| m.warmup_rate_spearman),
            STUDENT_T,
            fine_tuning,
            Some("against the decay rate 1/τ".into()),
            Some(3),
        ));
        out.push(finding(
            "warmup_spearman",
            Some(arch),
            of_runs(|m| m.warmup_spearman),
            STUDENT_T,
            fine_tuning,
            Some("against τ itself: exactly minus the rate's value".into()),
            Some(3),
        ));
        // Pairwise forgotten-into counts against confusion: our own statistic, not the
        // paper's "similar classes are forgotten most" (per class), so no paper number.
        out.push(finding(
            "forgetting_follows_similarity",
            Some(arch),
            interval(&mine.iter().filter_map(|m| follows.get(&m.id)?.pairwise).collect::<Vec<_>>()),
            STUDENT_T,
            "a run (seed): Spearman, over class pairs, between forgotten-into counts and confusion similarity",
            None,
            None,
        ));
        // The paper's statement, per class: a class's mean forgetting against its greatest
        // confusion similarity to another class.
        out.push(finding(
            "similar_classes_forgotten_most",
            Some(arch),
            interval(&mine.iter().filter_map(|m| follows.get(&m.id)?.per_class).collect::<Vec<_>>()),
            STUDENT_T,
            "a run (seed): Spearman, over classes, between mean forgetting and the class's greatest confusion similarity to another class",
            None,
            Some(5),
        ));
    }
    let within: Vec<(usize, usize)> = archs.iter().flat_map(|&a| pairs(Some(a))).collect();
    out.push(finding(
        "class_consistency_cross_seed",
        None,
        paired(&c.class_consistency, &within),
        JACKKNIFE,
        "a pair of seeds of one architecture: Spearman of their per-class mean forgetting",
        None,
        Some(5),
    ));
    out.push(finding(
        "class_consistency_cross_arch",
        None,
        paired(&c.class_consistency, &cross),
        JACKKNIFE,
        "a pair of runs of different architectures: Spearman of their per-class mean forgetting",
        None,
        Some(5),
    ));
    // What each finding was computed under, from its runs' recorded settings: the window for
    // every one; the retention definition for those built on decay fits (warm-up
    // predictability always reads the fine-tuning epochs).
    let distinct = |arch: Option<&str>, pick: fn(&dynamics::AnalysisSettings) -> &'static str| {
        let mut names: Vec<&str> = members.iter().filter(|m| arch.is_none_or(|a| m.arch == a)).map(|m| pick(&m.settings)).collect();
        names.sort_unstable();
        names.dedup();
        names.join("+")
    };
    for f in &mut out {
        let arch = f.arch.as_deref();
        f.window = distinct(arch, |s| s.window.as_str());
        match f.key.as_str() {
            "mean_r2" => f.retention = distinct(arch, |s| s.retention.as_str()),
            "warmup_spearman" | "warmup_spearman_rate" => {
                f.window = dynamics::Window::FineTuning.as_str().into();
                f.retention = distinct(arch, |s| s.retention.as_str());
            }
            _ => {}
        }
    }
    out
}
