//! The service behind the pages and the JSON API: runs and their results.

use std::sync::Arc;

use protocol::auth::Identity;
use protocol::{
    DatasetInfo, EpochMetrics, ExperimentSpec, Failure, Launched, LinkedRun, Phase, Progress, RunDetail, RunList, RunQuery, RunRequest, RunStatus, RunSummary,
    SamplePage, SampleQuery, SampleStats, StudyLink,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use crate::db::internal;
use crate::progress::Hub;
use crate::registry::Registry;

pub struct Service {
    pub pool: SqlitePool,
    pub registry: Arc<Registry>,
    pub hub: Hub,
    pub compare_cache: crate::analysis::CompareCache,
    /// The run page's data map and forgetting histogram of finished runs.
    pub run_cache: crate::analysis::RunCache,
    pub limits: MemberLimits,
    /// The data volume: launches are refused when it is nearly full.
    pub disk: Arc<crate::disk::Disk>,
}

/// What a member may queue; administrators are not limited (issue 19, item 7).
#[derive(Debug, Clone, Copy)]
pub struct MemberLimits {
    /// Runs queued or running at once (`FORGETLAB_MEMBER_MAX_ACTIVE_RUNS`).
    pub active_runs: u64,
    /// The highest queue priority (`FORGETLAB_MEMBER_MAX_PRIORITY`).
    pub max_priority: i64,
}

impl Default for MemberLimits {
    fn default() -> Self {
        Self { active_runs: 1000, max_priority: 10 }
    }
}

/// Columns the runs table may be sorted by, as the API names them.
const RUN_SORTS: &[(&str, &str)] = &[
    ("id", "r.id"),
    ("name", "r.name"),
    ("created_at", "r.created_at"),
    ("dataset", "r.dataset"),
    ("arch", "r.arch"),
    ("seed", "r.seed"),
    ("epochs", "r.epochs"),
    ("status", "j.status"),
    ("owner", "r.owner"),
    ("priority", "j.priority"),
    // The last epoch's validation accuracy and the tags, as the list query selects them.
    ("val_accuracy", "final_val_accuracy"),
    ("tags", "tags"),
];

/// What the sample lists may be sorted by besides the stored scores (`dynamics::Score::stored`).
const SAMPLE_SORTS: &[&str] = &["sample_index", "dataset_index", "label", "never_learned", "unforgettable"];

const RUN_COLUMNS: &str = "r.id, r.spec, r.dataset, r.arch, r.seed, r.epochs, r.created_at, r.owner, r.name, r.notes, j.id AS job_id, j.status, j.error,
    j.progress, j.started_at, j.finished_at, j.priority, j.slurm_job_id";

/// `YYYY-MM-DD`.
fn is_day(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10 && b[4] == b'-' && b[7] == b'-' && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Parses `name` or `-name` against a whitelist; returns the SQL column and direction.
fn sort_clause<'a>(sort: Option<&str>, allowed: impl Fn(&str) -> Option<&'a str>, default: &'a str) -> Result<String, Failure> {
    let Some(sort) = sort.filter(|s| !s.is_empty()) else { return Ok(default.to_owned()) };
    let (name, direction) = match sort.strip_prefix('-') {
        Some(name) => (name, "DESC"),
        None => (sort, "ASC"),
    };
    match allowed(name) {
        Some(column) => Ok(format!("{column} {direction}")),
        None => Err(Failure::bad_request(format!("cannot sort by {name:?}"))),
    }
}

impl Service {
    /// A service over `pool` with the default member limits and no disk reserve.
    pub fn new(pool: SqlitePool, registry: Arc<Registry>, hub: Hub) -> Self {
        let disk = Arc::new(crate::disk::Disk::new(".".into(), 0, 0));
        Self { pool, registry, hub, compare_cache: Default::default(), run_cache: Default::default(), limits: MemberLimits::default(), disk }
    }

    /// `GET /compare`, through the cache.
    pub async fn compare(&self, query: protocol::CompareQuery) -> Result<protocol::Comparison, Failure> {
        self.compare_cache.compare(&self.pool, query).await
    }

    /// One sample's trajectory in a run and in the other runs over its dataset.
    pub async fn sample_history(&self, run_id: i64, key: &str) -> Result<protocol::SampleHistory, Failure> {
        crate::analysis::sample_history(&self.pool, run_id, key, sample_stats_of).await
    }

    pub async fn datasets(&self) -> Result<Vec<DatasetInfo>, Failure> {
        self.registry.list().await
    }

    pub async fn launch(&self, request: RunRequest, who: &Identity) -> Result<Launched, Failure> {
        self.launch_in_study(request, None, who).await
    }

    /// Launches a run as `who`, as one of a study's grid (study id, arm) when given.
    pub async fn launch_in_study(&self, request: RunRequest, study: Option<(i64, usize)>, who: &Identity) -> Result<Launched, Failure> {
        crate::auth::check_may_launch(who)?;
        self.disk.admit("the run", 0)?;
        let datasets = self.registry.list().await?;
        let not_queued = |errors: protocol::FieldErrors| {
            let count = errors.0.len();
            Failure::invalid(format!("the run was not queued: {count} field{} to fix", if count == 1 { "" } else { "s" }), errors)
        };
        let spec = ExperimentSpec::parse(&request, &datasets);
        let queueing = request.queueing();
        let (mut spec, protocol::Queueing { priority, owner, tags, name, notes }) = match (spec, queueing.and_then(|q| owned_by(q, who, &self.limits))) {
            (Ok(spec), Ok(queueing)) => (spec, queueing),
            (spec, queueing) => {
                let mut errors = spec.err().unwrap_or_default();
                for (field, message) in queueing.err().unwrap_or_default().0 {
                    errors.add(&field, message);
                }
                return Err(not_queued(errors));
            }
        };
        // The worker opens the weights by the resolved path, confined to the data roots.
        if let Some(weights) = &spec.weights {
            let resolved = self.registry.resolve_file(weights).map_err(|message| {
                let mut errors = protocol::FieldErrors::default();
                errors.add("weights", message);
                not_queued(errors)
            })?;
            spec.weights = Some(resolved.display().to_string());
        }
        if let Some((source_runs, score)) = spec.sampling.source() {
            for &source_run in source_runs {
                if let Err(message) = self.check_source_run(source_run, &spec.dataset).await? {
                    let mut errors = protocol::FieldErrors::default();
                    errors.add("sampling.source_run", format!("{message}; the {} schedule needs its {score}", spec.sampling.plan.kind()));
                    return Err(not_queued(errors));
                }
            }
        }
        let mut tx = self.pool.begin().await.map_err(internal)?;
        let name = name.unwrap_or_else(|| spec.default_name());
        let run_id: i64 = sqlx::query_scalar(
            "INSERT INTO runs (spec, dataset, arch, seed, epochs, owner, study_id, study_arm, name, notes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(serde_json::to_string(&spec).map_err(internal)?)
        .bind(&spec.dataset)
        .bind(spec.arch.as_str())
        .bind(spec.seed as i64)
        .bind(spec.total_epochs())
        .bind(&owner)
        .bind(study.map(|s| s.0))
        .bind(study.map(|s| s.1 as i64))
        .bind(&name)
        .bind(&notes)
        .fetch_one(&mut *tx)
        .await
        .map_err(internal)?;
        insert_tags(&mut tx, run_id, &tags).await?;
        let job_id: i64 = sqlx::query_scalar("INSERT INTO jobs (run_id, status, priority) VALUES (?, 'queued', ?) RETURNING id")
            .bind(run_id)
            .bind(priority)
            .fetch_one(&mut *tx)
            .await
            .map_err(internal)?;
        // Counted inside the transaction that queued the run, so parallel launches cannot
        // pass the quota together.
        if !who.is_admin() {
            let active = active_runs(&mut *tx, &who.name).await?;
            if active > self.limits.active_runs {
                return Err(over_quota(&who.name, active - 1, 1, self.limits.active_runs));
            }
        }
        tx.commit().await.map_err(internal)?;
        tracing::info!(run = run_id, job = job_id, dataset = %spec.dataset, arch = %spec.arch, "run queued");
        self.hub.publish(Progress::new(job_id, run_id, RunStatus::Queued, spec.total_epochs(), None));
        Ok(Launched { id: run_id, job_id, status: RunStatus::Queued })
    }

    /// Whether run `source_run` can drive a schedule over `dataset`: it exists, succeeded (so
    /// its per-sample statistics are stored) and trained on the same dataset. `Ok(Err(_))`
    /// says what is wrong.
    async fn check_source_run(&self, source_run: i64, dataset: &str) -> Result<Result<(), String>, Failure> {
        let row: Option<(String, String)> = sqlx::query_as("SELECT r.dataset, j.status FROM runs r JOIN jobs j ON j.run_id = r.id WHERE r.id = ?")
            .bind(source_run)
            .fetch_optional(&self.pool)
            .await
            .map_err(internal)?;
        Ok(match row {
            None => Err(format!("there is no run #{source_run}")),
            Some((_, status)) if status != "succeeded" => Err(format!("run #{source_run} is {status}, not succeeded")),
            Some((other, _)) if other != dataset => Err(format!("run #{source_run} trained on {other}, not {dataset}")),
            Some(_) => Ok(()),
        })
    }

    /// The run's schedule and the samples each of its stored epochs trained on.
    pub async fn shown(&self, id: i64) -> Result<protocol::sampling::ShownSamples, Failure> {
        let spec: String = sqlx::query_scalar("SELECT spec FROM runs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(internal)?
            .ok_or_else(|| Failure::not_found(format!("no run #{id}")))?;
        let spec: ExperimentSpec = serde_json::from_str(&spec).map_err(internal)?;
        let sample_count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM run_samples WHERE run_id = ?").bind(id).fetch_one(&self.pool).await.map_err(internal)?;
        let rows: Vec<(i64, Option<i64>, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT m.epoch, s.shown_count, s.shown FROM epoch_metrics m LEFT JOIN epoch_shown s ON s.run_id = m.run_id AND s.epoch = m.epoch
             WHERE m.run_id = ? ORDER BY m.epoch",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(internal)?;
        let epochs = rows
            .into_iter()
            .map(|(epoch, count, bits)| {
                let samples = match &bits {
                    Some(bits) => protocol::pack::unpack_bits(bits, sample_count as usize).map_err(internal)?,
                    None => Vec::new(),
                };
                Ok(protocol::sampling::ShownEpoch {
                    epoch: epoch as u32,
                    count: count.unwrap_or(sample_count) as u64,
                    every: bits.is_none(),
                    samples: samples.iter().enumerate().filter(|(_, shown)| **shown).map(|(i, _)| i as u32).collect(),
                })
            })
            .collect::<Result<Vec<_>, Failure>>()?;
        Ok(protocol::sampling::ShownSamples { run_id: id, sampling: spec.sampling, sample_count: sample_count as u64, epochs })
    }

    /// One page of the runs table, with the number of runs matching the filters.
    pub async fn runs(&self, mut query: RunQuery) -> Result<RunList, Failure> {
        // An empty filter (a form's "any") is no filter.
        for filter in [
            &mut query.status,
            &mut query.dataset,
            &mut query.arch,
            &mut query.owner,
            &mut query.tag,
            &mut query.created_from,
            &mut query.created_to,
            &mut query.sort,
        ] {
            if filter.as_deref().is_some_and(|f| f.trim().is_empty()) {
                *filter = None;
            }
        }
        if let Some(status) = query.status.as_deref().filter(|s| RunStatus::parse(s).is_none()) {
            let known: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
            return Err(Failure::bad_request(format!("unknown status {status:?}; use one of {}", known.join(", "))));
        }
        for (name, day) in [("created_from", &query.created_from), ("created_to", &query.created_to)] {
            if let Some(day) = day.as_deref().filter(|d| !is_day(d)) {
                return Err(Failure::bad_request(format!("{name} must be a day as YYYY-MM-DD, got {day:?}")));
            }
        }
        let order = sort_clause(query.sort.as_deref(), |name| RUN_SORTS.iter().find(|(n, _)| *n == name).map(|(_, c)| *c), "r.id DESC")?;
        let limit = query.limit.unwrap_or(100).min(1000);
        let offset = query.offset.unwrap_or(0);
        // ?1 status, ?2 dataset, ?3 arch, ?4 owner, ?5 tag, ?6 from, ?7 to (inclusive day), ?8 study.
        let filters = "WHERE (?1 IS NULL OR j.status = ?1) AND (?2 IS NULL OR r.dataset = ?2) AND (?3 IS NULL OR r.arch = ?3)
                 AND (?4 IS NULL OR r.owner = ?4)
                 AND (?5 IS NULL OR EXISTS (SELECT 1 FROM run_tags t WHERE t.run_id = r.id AND t.tag = ?5))
                 AND (?6 IS NULL OR r.created_at >= ?6) AND (?7 IS NULL OR r.created_at < date(?7, '+1 day'))
                 AND (?8 IS NULL OR r.study_id = ?8)";
        let bind = |sql| {
            sqlx::query(sql)
                .bind(&query.status)
                .bind(&query.dataset)
                .bind(&query.arch)
                .bind(&query.owner)
                .bind(&query.tag)
                .bind(&query.created_from)
                .bind(&query.created_to)
                .bind(query.study)
        };
        let count_sql = format!("SELECT COUNT(*) FROM runs r JOIN jobs j ON j.run_id = r.id {filters}");
        let total: i64 = bind(&count_sql).fetch_one(&self.pool).await.map_err(internal)?.get(0);
        let sql = format!(
            "SELECT {RUN_COLUMNS},
                (SELECT val_accuracy FROM epoch_metrics m WHERE m.run_id = r.id ORDER BY epoch DESC LIMIT 1) AS final_val_accuracy,
                (SELECT group_concat(tag, ',') FROM run_tags t WHERE t.run_id = r.id) AS tags,
                r.study_id, (SELECT name FROM studies s WHERE s.id = r.study_id) AS study_name
             FROM runs r JOIN jobs j ON j.run_id = r.id {filters}
             ORDER BY {order}, r.id DESC LIMIT ?9 OFFSET ?10"
        );
        let rows = bind(&sql).bind(limit).bind(offset).fetch_all(&self.pool).await.map_err(internal)?;
        let runs = rows
            .iter()
            .map(|row| {
                let status = status_of(row)?;
                let mut tags: Vec<String> = row.get::<Option<String>, _>("tags").map(|t| t.split(',').map(str::to_owned).collect()).unwrap_or_default();
                tags.sort();
                Ok(RunSummary {
                    id: row.get("id"),
                    dataset: row.get("dataset"),
                    arch: row.get("arch"),
                    seed: row.get::<i64, _>("seed") as u64,
                    epochs: row.get::<i64, _>("epochs") as u32,
                    status,
                    created_at: row.get("created_at"),
                    started_at: row.get("started_at"),
                    finished_at: row.get("finished_at"),
                    error: row.get("error"),
                    progress: progress_of(row, status),
                    final_val_accuracy: row.get("final_val_accuracy"),
                    owner: row.get("owner"),
                    priority: row.get("priority"),
                    tags,
                    slurm_job_id: row.get("slurm_job_id"),
                    study: row
                        .get::<Option<i64>, _>("study_id")
                        .map(|id| StudyLink { id, name: row.get::<Option<String>, _>("study_name").unwrap_or_default() }),
                    name: row.get("name"),
                })
            })
            .collect::<Result<Vec<_>, Failure>>()?;
        Ok(RunList { total: total as u64, offset: u64::from(offset), limit: u64::from(limit), runs, owners: vec![], tags: vec![] })
    }

    /// Every owner and every tag any run has, sorted: the choices of the runs table's owner and
    /// tag filters (indexes runs_owner and run_tags_tag).
    pub async fn owners_and_tags(&self) -> Result<(Vec<String>, Vec<String>), Failure> {
        let owners =
            sqlx::query_scalar("SELECT DISTINCT owner FROM runs WHERE owner IS NOT NULL ORDER BY owner").fetch_all(&self.pool).await.map_err(internal)?;
        let tags = sqlx::query_scalar("SELECT DISTINCT tag FROM run_tags ORDER BY tag").fetch_all(&self.pool).await.map_err(internal)?;
        Ok((owners, tags))
    }

    pub async fn run(&self, id: i64) -> Result<RunDetail, Failure> {
        let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs r JOIN jobs j ON j.run_id = r.id WHERE r.id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(internal)?
            .ok_or_else(|| Failure::not_found(format!("no run #{id}")))?;
        let spec: ExperimentSpec = serde_json::from_str(row.get("spec")).map_err(internal)?;
        let status = status_of(&row)?;
        let epochs = sqlx::query("SELECT * FROM epoch_metrics WHERE run_id = ? ORDER BY epoch")
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(internal)?
            .iter()
            .map(epoch_metrics_of)
            .collect::<Result<Vec<_>, _>>()?;
        let (sample_count, forgetting_histogram) = self.run_cache.forgetting_histogram(&self.pool, id).await?;
        let class_names = self.registry.get(&spec.dataset).await.map(|d| d.class_names).unwrap_or_default();
        let confusion: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT val_confusion FROM epoch_metrics WHERE run_id = ? AND val_confusion IS NOT NULL ORDER BY epoch DESC LIMIT 1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(internal)?
                .flatten();
        let val_confusion = confusion.map(|bytes| crate::analysis::confusion_matrix(&bytes)).transpose().map_err(internal)?;
        let analysis: Option<String> =
            sqlx::query_scalar("SELECT summary FROM run_analysis WHERE run_id = ?").bind(id).fetch_optional(&self.pool).await.map_err(internal)?;
        let analysis = analysis.map(|json| serde_json::from_str(&json)).transpose().map_err(internal)?;
        let tags: Vec<String> =
            sqlx::query_scalar("SELECT tag FROM run_tags WHERE run_id = ? ORDER BY tag").bind(id).fetch_all(&self.pool).await.map_err(internal)?;
        let study = sqlx::query("SELECT s.id, s.name FROM studies s JOIN runs r ON r.study_id = s.id WHERE r.id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(internal)?
            .map(|row| StudyLink { id: row.get("id"), name: row.get("name") });
        let sources: Vec<i64> = spec.sampling.source().map(|(runs, _)| runs.to_vec()).unwrap_or_default();
        let source_runs = if sources.is_empty() {
            Vec::new()
        } else {
            self.linked_runs("r.id IN (SELECT value FROM json_each(?))", &serde_json::to_string(&sources).map_err(internal)?).await?
        };
        // Runs whose selection reads this one: `source_run` is a number or a list of them.
        let derived_runs =
            self.linked_runs("EXISTS (SELECT 1 FROM json_each(r.spec, '$.sampling.source_run') WHERE value = CAST(? AS INTEGER))", &id.to_string()).await?;
        let shown: Vec<(i64, i64)> = sqlx::query_as("SELECT epoch, shown_count FROM epoch_shown WHERE run_id = ? ORDER BY epoch")
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(internal)?;
        let data_fraction = shown
            .into_iter()
            .map(|(epoch, shown)| protocol::EpochFraction { epoch: epoch as u32, shown: shown as u64, fraction: shown as f64 / sample_count.max(1) as f64 })
            .collect();
        Ok(RunDetail {
            id,
            spec,
            status,
            created_at: row.get("created_at"),
            started_at: row.get("started_at"),
            finished_at: row.get("finished_at"),
            error: row.get("error"),
            progress: progress_of(&row, status),
            epochs,
            sample_count,
            forgetting_histogram,
            class_names,
            val_confusion,
            analysis,
            owner: row.get("owner"),
            tags,
            study,
            source_runs,
            derived_runs,
            name: row.get("name"),
            notes: row.get("notes"),
            data_fraction,
        })
    }

    /// `PATCH /api/v1/runs/{id}`: a new name, notes or tags, as the run's owner or an
    /// administrator; an empty name brings back the default. Nothing changes when a field is
    /// invalid (422 with a message per field).
    pub async fn update_run(&self, id: i64, change: protocol::RunChange, who: &Identity) -> Result<RunDetail, Failure> {
        crate::auth::check_may_change(&self.pool, who, crate::auth::Owned::Run(id)).await?;
        let mut errors = protocol::FieldErrors::default();
        let text = |value: &Option<String>| value.clone().map(serde_json::Value::String);
        let name = errors.take("name", text(&change.name).map(|value| protocol::spec::parse_run_name(&value)).transpose());
        let notes = errors.take("notes", text(&change.notes).map(|value| protocol::spec::parse_run_notes(&value)).transpose());
        let tags = errors.take("tags", change.tags.as_ref().map(protocol::spec::parse_tags).transpose());
        if !errors.0.is_empty() {
            let count = errors.0.len();
            return Err(Failure::invalid(format!("run #{id} was not changed: {count} field{} to fix", if count == 1 { "" } else { "s" }), errors));
        }
        // An empty name: the default, from the run's spec.
        let name = match name {
            Some(None) => {
                let spec: String = sqlx::query_scalar("SELECT spec FROM runs WHERE id = ?").bind(id).fetch_one(&self.pool).await.map_err(internal)?;
                Some(serde_json::from_str::<ExperimentSpec>(&spec).map_err(internal)?.default_name())
            }
            given => given.flatten(),
        };
        let mut tx = self.pool.begin().await.map_err(internal)?;
        if let Some(name) = name {
            sqlx::query("UPDATE runs SET name = ? WHERE id = ?").bind(name).bind(id).execute(&mut *tx).await.map_err(internal)?;
        }
        if let Some(notes) = notes {
            sqlx::query("UPDATE runs SET notes = ? WHERE id = ?").bind(notes).bind(id).execute(&mut *tx).await.map_err(internal)?;
        }
        if let Some(tags) = tags {
            sqlx::query("DELETE FROM run_tags WHERE run_id = ?").bind(id).execute(&mut *tx).await.map_err(internal)?;
            insert_tags(&mut tx, id, &tags).await?;
        }
        tx.commit().await.map_err(internal)?;
        self.run(id).await
    }

    /// The runs matching `condition` (SQL over `runs r`, one `?` bound to `value`), oldest first.
    async fn linked_runs(&self, condition: &str, value: &str) -> Result<Vec<LinkedRun>, Failure> {
        let rows =
            sqlx::query(&format!("SELECT r.id, r.arch, r.seed, r.spec, j.status FROM runs r JOIN jobs j ON j.run_id = r.id WHERE {condition} ORDER BY r.id"))
                .bind(value)
                .fetch_all(&self.pool)
                .await
                .map_err(internal)?;
        rows.iter()
            .map(|row| {
                let spec: ExperimentSpec = serde_json::from_str(row.get("spec")).map_err(internal)?;
                Ok(LinkedRun {
                    id: row.get("id"),
                    arch: row.get("arch"),
                    seed: row.get::<i64, _>("seed") as u64,
                    status: status_of(row)?,
                    sampling: spec.sampling.plan.kind().to_owned(),
                })
            })
            .collect()
    }

    /// `GET /api/v1/runs/{id}/classes`.
    pub async fn classes(&self, run_id: i64) -> Result<protocol::ClassReport, Failure> {
        self.run_exists(run_id).await?;
        let dataset: String = sqlx::query_scalar("SELECT dataset FROM runs WHERE id = ?").bind(run_id).fetch_one(&self.pool).await.map_err(internal)?;
        let class_names = self.registry.get(&dataset).await.map(|d| d.class_names).unwrap_or_default();
        crate::analysis::class_report(&self.pool, run_id, class_names).await
    }

    pub async fn samples(&self, run_id: i64, query: SampleQuery) -> Result<SamplePage, Failure> {
        self.run_exists(run_id).await?;
        let stored = |name: &str| dynamics::Score::parse(name).filter(|s| s.stored()).map(dynamics::Score::as_str);
        let order =
            sort_clause(query.sort.as_deref(), |name| SAMPLE_SORTS.iter().find(|n| **n == name).copied().or_else(|| stored(name)), "forgetting_events DESC")?;
        let limit = query.limit.unwrap_or(100).min(10_000);
        let offset = query.offset.unwrap_or(0);
        let bounds = query.bounds();
        if let Some((column, _, value)) = bounds.iter().find(|b| !b.2.is_finite()) {
            return Err(Failure::bad_request(format!("the bound on {column} must be a finite number, got {value}")));
        }
        // Column names and operators come from SampleQuery::bounds, never from the request.
        let filter: String = bounds.iter().map(|(column, op, _)| format!(" AND {column} {op} ?")).collect();
        let total_sql = format!("SELECT COUNT(*) FROM sample_stats WHERE run_id = ? AND (? IS NULL OR label = ?){filter}{PUBLISHED}");
        let mut total = sqlx::query_scalar::<_, i64>(&total_sql).bind(run_id).bind(query.label).bind(query.label);
        for (_, _, value) in &bounds {
            total = total.bind(value);
        }
        let total = total.fetch_one(&self.pool).await.map_err(internal)?;
        let rows_sql = format!(
            "SELECT * FROM sample_stats WHERE run_id = ? AND (? IS NULL OR label = ?){filter}{PUBLISHED} ORDER BY {order}, sample_index LIMIT ? OFFSET ?"
        );
        let mut rows = sqlx::query(&rows_sql).bind(run_id).bind(query.label).bind(query.label);
        for (_, _, value) in &bounds {
            rows = rows.bind(value);
        }
        let rows = rows.bind(limit).bind(offset).fetch_all(&self.pool).await.map_err(internal)?;
        Ok(SamplePage { total: total as u64, offset: u64::from(offset), limit: u64::from(limit), samples: rows.iter().map(sample_stats_of).collect() })
    }

    /// Every per-sample statistic of a run, in recording order (for exports).
    pub async fn all_samples(&self, run_id: i64) -> Result<Vec<SampleStats>, Failure> {
        self.run_exists(run_id).await?;
        let rows = sqlx::query(&format!("SELECT * FROM sample_stats WHERE run_id = ?{PUBLISHED} ORDER BY sample_index"))
            .bind(run_id)
            .fetch_all(&self.pool)
            .await
            .map_err(internal)?;
        Ok(rows.iter().map(sample_stats_of).collect())
    }

    async fn run_exists(&self, run_id: i64) -> Result<(), Failure> {
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM runs WHERE id = ?").bind(run_id).fetch_optional(&self.pool).await.map_err(internal)?;
        found.map(drop).ok_or_else(|| Failure::not_found(format!("no run #{run_id}")))
    }

    /// The current state of every queued, running or analysing job (for a new event stream).
    pub async fn active_progress(&self, run_id: Option<i64>) -> Result<Vec<Progress>, Failure> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs r JOIN jobs j ON j.run_id = r.id
             WHERE (?1 IS NULL AND j.status IN ('queued', 'running', 'analysing')) OR r.id = ?1 ORDER BY r.id"
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(internal)?;
        rows.iter()
            .map(|row| {
                let status = status_of(row)?;
                Ok(progress_of(row, status)
                    .unwrap_or_else(|| Progress::new(row.get("job_id"), row.get("id"), status, row.get::<i64, _>("epochs") as u32, None)))
            })
            .collect()
    }
}

fn status_of(row: &SqliteRow) -> Result<RunStatus, Failure> {
    let text: String = row.get("status");
    RunStatus::parse(&text).ok_or_else(|| internal(format!("unknown job status {text:?} in the database")))
}

/// The stored last report, rebuilt for the job's current status (which may be newer).
fn progress_of(row: &SqliteRow, status: RunStatus) -> Option<Progress> {
    let text: Option<String> = row.get("progress");
    let stored: Progress = serde_json::from_str(&text?).ok()?;
    Some(Progress::new(stored.job_id, stored.run_id, status, stored.epochs, Some(stored.heartbeat)))
}

fn epoch_metrics_of(row: &SqliteRow) -> Result<EpochMetrics, Failure> {
    let phase: String = row.get("phase");
    Ok(EpochMetrics {
        epoch: row.get::<i64, _>("epoch") as u32,
        phase: Phase::parse(&phase).ok_or_else(|| internal(format!("unknown phase {phase:?}")))?,
        train_loss: row.get("train_loss"),
        train_accuracy: row.get("train_accuracy"),
        val_loss: row.get("val_loss"),
        val_accuracy: row.get("val_accuracy"),
        lr: row.get("lr"),
        seconds: row.get("seconds"),
    })
}

/// A condition on `sample_stats` rows (column `run_id`): the run's statistics are complete.
/// While a run is `analysing` they are being written in several transactions
/// (`Queue::compute_sample_stats`), and none of them are shown.
pub(crate) const PUBLISHED: &str = " AND run_id NOT IN (SELECT run_id FROM jobs WHERE status = 'analysing')";

pub fn sample_stats_of(row: &SqliteRow) -> SampleStats {
    SampleStats {
        sample_key: row.get("sample_key"),
        sample_index: row.get::<i64, _>("sample_index") as u32,
        dataset_index: row.get::<i64, _>("dataset_index") as u32,
        label: row.get::<i64, _>("label") as u32,
        forgetting_events: row.get::<i64, _>("forgetting_events") as u32,
        learning_events: row.get::<i64, _>("learning_events") as u32,
        first_learned_epoch: row.get::<Option<i64>, _>("first_learned_epoch").map(|e| e as u32),
        never_learned: row.get("never_learned"),
        unforgettable: row.get("unforgettable"),
        confidence: row.get("confidence"),
        variability: row.get("variability"),
        correctness: row.get("correctness"),
        tau: row.get("tau"),
        r2: row.get("r2"),
        warmup_loss: row.get("warmup_loss"),
        mean_margin: row.get("mean_margin"),
        el2n: row.get("el2n"),
        last_predicted: row.get::<Option<i64>, _>("last_predicted").map(|p| p as u32),
    }
}

/// A run is launched by the signed-in account: `owner`, when given, must name it, unless an
/// administrator launches for someone else.
/// Runs of `owner` queued or running.
pub(crate) async fn active_runs<'e, E: sqlx::Executor<'e, Database = sqlx::Sqlite>>(db: E, owner: &str) -> Result<u64, Failure> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs j JOIN runs r ON r.id = j.run_id WHERE r.owner = ? AND j.status IN ('queued', 'running')")
        .bind(owner)
        .fetch_one(db)
        .await
        .map_err(internal)?;
    Ok(n as u64)
}

/// The refusal of `more` runs to a member who has `active` of at most `quota`.
pub(crate) fn over_quota(name: &str, active: u64, more: u64, quota: u64) -> Failure {
    Failure::new(
        429,
        format!(
            "{name} has {active} run(s) queued or running and may have at most {quota} (FORGETLAB_MEMBER_MAX_ACTIVE_RUNS); {more} more would pass it: wait for some to finish or cancel them"
        ),
    )
}

/// Stores `tags` as the run's (the caller has removed any it had).
async fn insert_tags(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, run_id: i64, tags: &[String]) -> Result<(), Failure> {
    for tag in tags {
        sqlx::query("INSERT INTO run_tags (run_id, tag) VALUES (?, ?)").bind(run_id).bind(tag).execute(&mut **tx).await.map_err(internal)?;
    }
    Ok(())
}

fn owned_by(mut queueing: protocol::Queueing, who: &Identity, limits: &MemberLimits) -> Result<protocol::Queueing, protocol::FieldErrors> {
    if !who.is_admin() && queueing.priority > limits.max_priority {
        let mut errors = protocol::FieldErrors::default();
        errors.add(
            "priority",
            format!("members may queue at priority {} at most (FORGETLAB_MEMBER_MAX_PRIORITY); ask an administrator for more", limits.max_priority),
        );
        return Err(errors);
    }
    match &queueing.owner {
        Some(owner) if owner != &who.name && !who.is_admin() => {
            let mut errors = protocol::FieldErrors::default();
            errors.add("owner", format!("runs are launched as the signed-in account ({}); leave owner out (only administrators may name another)", who.name));
            Err(errors)
        }
        Some(_) => Ok(queueing),
        None => {
            queueing.owner = Some(who.name.clone());
            Ok(queueing)
        }
    }
}

/// What the pages' server functions call: the service, the queue for cancel and retry, and
/// the accounts.
pub struct Site {
    pub service: Arc<Service>,
    pub queue: Arc<crate::queue::Queue>,
    pub auth: Arc<crate::auth::Auth>,
}

#[async_trait::async_trait]
impl app::backend::Backend for Site {
    async fn datasets(&self) -> Result<Vec<DatasetInfo>, Failure> {
        self.service.datasets().await
    }
    async fn launch(&self, request: RunRequest, who: &Identity) -> Result<Launched, Failure> {
        self.service.launch(request, who).await
    }
    async fn runs(&self, query: RunQuery) -> Result<RunList, Failure> {
        // The page's filters offer every owner and tag; the JSON API and studies do not read them.
        let mut list = self.service.runs(query).await?;
        (list.owners, list.tags) = self.service.owners_and_tags().await?;
        Ok(list)
    }
    async fn disk_space(&self) -> Result<protocol::DiskSpace, Failure> {
        Ok(self.service.disk.now())
    }
    async fn workers(&self) -> Result<Vec<protocol::WorkerView>, Failure> {
        Ok(self.queue.workers.online())
    }
    async fn studies(&self) -> Result<Vec<protocol::study::StudySummary>, Failure> {
        self.service.studies().await
    }
    async fn study(&self, id: i64) -> Result<protocol::study::StudyDetail, Failure> {
        self.service.study(id).await
    }
    async fn launch_study(&self, request: protocol::study::StudyRequest, who: &Identity) -> Result<protocol::study::StudyLaunched, Failure> {
        self.service.launch_study(request, who).await
    }
    async fn cancel_study(&self, id: i64, who: &Identity) -> Result<u64, Failure> {
        Ok(crate::studies::cancel_study(&self.service, &self.queue, id, who).await?.len() as u64)
    }
    async fn data_map(&self, run_id: i64) -> Result<protocol::DataMap, Failure> {
        self.service.run_cache.data_map(&self.service.pool, run_id).await
    }
    async fn compare(&self, query: protocol::CompareQuery) -> Result<protocol::Comparison, Failure> {
        self.service.compare(query).await
    }
    async fn sample_history(&self, run_id: i64, key: String) -> Result<protocol::SampleHistory, Failure> {
        self.service.sample_history(run_id, &key).await
    }
    async fn run(&self, id: i64) -> Result<RunDetail, Failure> {
        self.service.run(id).await
    }
    async fn update_run(&self, id: i64, change: protocol::RunChange, who: &Identity) -> Result<RunDetail, Failure> {
        self.service.update_run(id, change, who).await
    }
    async fn samples(&self, run_id: i64, query: SampleQuery) -> Result<SamplePage, Failure> {
        self.service.samples(run_id, query).await
    }
    async fn cancel(&self, run_id: i64, who: &Identity) -> Result<RunStatus, Failure> {
        self.queue.cancel_as(run_id, who).await
    }
    async fn retry(&self, run_id: i64, who: &Identity) -> Result<RunStatus, Failure> {
        self.queue.retry_as(run_id, who).await
    }
    async fn classes(&self, run_id: i64) -> Result<protocol::ClassReport, Failure> {
        self.service.classes(run_id).await
    }
    async fn log(&self, run_id: i64, tail: u32) -> Result<protocol::JobLog, Failure> {
        self.queue.log_tail(run_id, tail).await
    }
    async fn create_token(&self, who: &Identity, name: String) -> Result<protocol::auth::NewToken, Failure> {
        self.auth.create_token(who, &name).await
    }
    async fn tokens(&self, who: &Identity) -> Result<Vec<protocol::auth::TokenInfo>, Failure> {
        self.auth.tokens(who).await
    }
    async fn revoke_token(&self, who: &Identity, id: i64) -> Result<(), Failure> {
        self.auth.revoke_token(who, id).await
    }
    async fn change_password(&self, who: &Identity, old: String, new: String, revoke_tokens: bool) -> Result<String, Failure> {
        let changed = self.auth.change_password(who, &old, &new, revoke_tokens).await?;
        let mut said = format!("password changed; {} other session(s) ended", changed.sessions_ended);
        if revoke_tokens {
            said.push_str(&format!("; {} API token(s) revoked", changed.tokens_revoked));
        }
        Ok(said)
    }
    async fn sign_out_everywhere(&self, who: &Identity) -> Result<u64, Failure> {
        self.auth.close_all_sessions(who).await
    }
    async fn accounts(&self) -> Result<Vec<protocol::auth::Account>, Failure> {
        self.auth.accounts().await
    }
    async fn create_account(&self, name: String, password: String, role: protocol::auth::Role) -> Result<protocol::auth::Account, Failure> {
        self.auth.create_user(&name, &password, role).await
    }
    async fn update_account(
        &self,
        who: &Identity,
        name: String,
        role: Option<protocol::auth::Role>,
        disabled: Option<bool>,
    ) -> Result<protocol::auth::Account, Failure> {
        self.auth.update_user(Some(who), &name, role, disabled).await
    }
    async fn reset_password(&self, who: &Identity, name: String, password: String, revoke_tokens: bool) -> Result<String, Failure> {
        let done = self.auth.reset_password(Some(who), &name, &password, revoke_tokens).await?;
        let mut said = format!("{name}'s password was reset; {} session(s) ended", done.sessions_ended);
        if revoke_tokens {
            said.push_str(&format!("; {} API token(s) revoked", done.tokens_revoked));
        }
        Ok(said)
    }
}
