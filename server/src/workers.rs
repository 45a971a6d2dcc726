//! The workers the server has heard from lately, for the jobs page (`GET /api/v1/workers`):
//! each lease poll and each heartbeat says a worker is alive, what it trains on, and what it
//! is doing. Memory only: a restarted server knows its workers again at their next poll.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use protocol::WorkerView;
use protocol::worker::Heartbeat;

#[derive(Clone)]
struct Seen {
    at: Instant,
    device: Option<String>,
    job: Option<(i64, i64)>,
    memory_bytes: Option<u64>,
    images_per_sec: Option<f64>,
}

pub struct Workers {
    seen: Mutex<HashMap<String, Seen>>,
    /// A worker not heard from for this long is not listed (and forgotten).
    online: Duration,
}

impl Workers {
    pub fn new(online: Duration) -> Self {
        Self { seen: Mutex::new(HashMap::new()), online }
    }

    /// A lease poll: `job` is what it was given (job, run), `None` when the queue was empty.
    pub fn polled(&self, name: &str, device: Option<&str>, job: Option<(i64, i64)>) {
        self.update(name, |seen| {
            if device.is_some() {
                seen.device = device.map(str::to_owned);
            }
            if seen.job != job {
                (seen.memory_bytes, seen.images_per_sec) = (None, None);
            }
            seen.job = job;
        });
    }

    /// A heartbeat of `name`'s job.
    pub fn beat(&self, name: &str, job: (i64, i64), beat: &Heartbeat) {
        self.update(name, |seen| {
            if beat.device.is_some() {
                seen.device = beat.device.clone();
            }
            seen.job = Some(job);
            seen.memory_bytes = beat.memory_bytes.or(seen.memory_bytes);
            seen.images_per_sec = beat.images_per_sec.or(seen.images_per_sec);
        });
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut Seen)) {
        let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let online = self.online;
        seen.retain(|_, s| now.duration_since(s.at) < online);
        let entry = seen.entry(name.to_owned()).or_insert(Seen { at: now, device: None, job: None, memory_bytes: None, images_per_sec: None });
        entry.at = now;
        change(entry);
    }

    /// The workers heard from within the online time, the most recently heard first.
    pub fn online(&self) -> Vec<WorkerView> {
        let seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let mut out: Vec<WorkerView> = seen
            .iter()
            .filter(|(_, s)| now.duration_since(s.at) < self.online)
            .map(|(name, s)| WorkerView {
                name: name.clone(),
                device: s.device.clone(),
                seconds_since_seen: now.duration_since(s.at).as_secs_f64(),
                job_id: s.job.map(|j| j.0),
                run_id: s.job.map(|j| j.1),
                memory_bytes: s.memory_bytes,
                images_per_sec: s.images_per_sec,
            })
            .collect();
        out.sort_by(|a, b| a.seconds_since_seen.total_cmp(&b.seconds_since_seen).then_with(|| a.name.cmp(&b.name)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_listed_with_its_device_and_job_until_it_goes_quiet() {
        let workers = Workers::new(Duration::from_millis(200));
        workers.polled("host/cpu0", Some("cpu (why)"), None);
        let beat = Heartbeat { device: Some("cpu (why)".into()), memory_bytes: Some(1 << 30), images_per_sec: Some(512.0), ..Default::default() };
        workers.polled("host/cpu1", None, Some((7, 3)));
        workers.beat("host/cpu1", (7, 3), &beat);
        let listed = workers.online();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].name, "host/cpu1", "the most recent first");
        assert_eq!((listed[0].job_id, listed[0].run_id, listed[0].memory_bytes, listed[0].images_per_sec), (Some(7), Some(3), Some(1 << 30), Some(512.0)));
        assert_eq!((listed[1].device.as_deref(), listed[1].job_id), (Some("cpu (why)"), None));
        // Back to polling: no job, and its job's numbers go with it.
        workers.polled("host/cpu1", None, None);
        let idle = workers.online().into_iter().find(|w| w.name == "host/cpu1").unwrap();
        assert_eq!((idle.job_id, idle.memory_bytes, idle.device.as_deref()), (None, None, Some("cpu (why)")));
        std::thread::sleep(Duration::from_millis(250));
        assert!(workers.online().is_empty(), "not heard from within the online time");
    }
}
