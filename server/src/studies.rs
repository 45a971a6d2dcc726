//! Studies: a grid of runs launched together (`protocol::study`), followed as one, and
//! reported as one: the first arm's runs compared in the form of DESIGN.md's findings, and
//! every arm's accuracy and macro-F1 over seeds against the `random` arm.

use std::collections::HashMap;

use protocol::study::{self, ArmReport, Interval, StudyDetail, StudyLaunched, StudyPlan, StudyReport, StudyRequest, StudyRun, StudySummary};
use protocol::{CompareQuery, ExperimentSpec, Failure, FieldErrors, RunQuery, RunStatus, Sampling};
use serde_json::{json, Map, Value};
use sqlx::Row;

use crate::auth::{check_may_change, Owned};
use crate::db::internal;
use protocol::auth::Identity;
use crate::service::Service;

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
        let runs = study::expand(&plan.base, &plan.archs, &new, &plan.arms);
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
                SUM(j.status = 'succeeded') AS succeeded, SUM(j.status IN ('queued', 'running')) AS active,
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
        let arms_of: HashMap<i64, i64> = sqlx::query_as("SELECT id, study_arm FROM runs WHERE study_id = ?").bind(id).fetch_all(&self.pool).await.map_err(internal)?.into_iter().collect();
        let list = self.runs(RunQuery { study: Some(id), sort: Some("id".into()), limit: Some(1000), ..Default::default() }).await?;
        let runs: Vec<StudyRun> = list
            .runs
            .into_iter()
            .map(|run| StudyRun { arch: run.arch.clone(), seed: run.seed, arm: arms_of.get(&run.id).copied().unwrap_or(0) as usize, run })
            .collect();
        let arm_names: Vec<String> = plan.arms.iter().map(|a| Sampling::parse(a).map_or_else(|_| a.to_string(), |s| s.to_string())).collect();
        let report = self.study_report(&plan, &runs, &arm_names).await?;
        Ok(StudyDetail { id, name, created_at, dataset, archs: plan.archs.iter().map(|a| a.0.clone()).collect(), seeds: plan.seeds, arms: arm_names, runs, report })
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
        // Final validation accuracy and macro-F1 of each finished run.
        let mut outcome: HashMap<i64, (Option<f64>, Option<f64>, u64)> = HashMap::new();
        for run in &done {
            let detail = self.run(run.run.id).await?;
            let accuracy = detail.epochs.last().and_then(|e| e.val_accuracy);
            let f1 = detail.val_confusion.as_deref().and_then(dynamics::classes::macro_f1);
            outcome.insert(run.run.id, (accuracy, f1, detail.spec.sampling.shown_count(detail.sample_count as usize) as u64));
        }
        let random_arm = plan.arms.iter().position(|a| Sampling::parse(a).is_ok_and(|s| s.plan.kind() == "random"));
        let accuracy_of = |arm: usize, arch: &str, seed: u64| {
            done.iter().find(|r| r.arm == arm && r.arch == arch && r.seed == seed).and_then(|r| outcome.get(&r.run.id)).and_then(|o| o.0)
        };
        let mut arms = Vec::new();
        for (arm, name) in arm_names.iter().enumerate() {
            for (arch, _) in &plan.archs {
                let mine: Vec<&&StudyRun> = done.iter().filter(|r| r.arm == arm && &r.arch == arch).collect();
                let seeds: Vec<(u64, Option<f64>, Option<f64>)> = mine.iter().map(|r| (r.seed, outcome[&r.run.id].0, outcome[&r.run.id].1)).collect();
                let paired: Vec<f64> = match random_arm.filter(|&r| r != arm) {
                    Some(random) => seeds.iter().filter_map(|&(seed, acc, _)| Some(acc? - accuracy_of(random, arch, seed)?)).collect(),
                    None => Vec::new(),
                };
                arms.push(ArmReport {
                    arm: name.clone(),
                    arch: arch.clone(),
                    samples_per_epoch: mine.first().map(|r| outcome[&r.run.id].2),
                    accuracy: interval(&seeds.iter().filter_map(|s| s.1).collect::<Vec<_>>()),
                    macro_f1: interval(&seeds.iter().filter_map(|s| s.2).collect::<Vec<_>>()),
                    accuracy_vs_random: interval(&paired),
                    seeds,
                });
            }
        }
        Ok(StudyReport { comparison, comparison_note, arms, published: study::published() })
    }
}
