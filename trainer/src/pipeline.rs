//! The end of an epoch, off the training thread (issue 18, item 4): the epoch's records go to
//! the server and its checkpoint goes to disk from a background thread while the next epoch
//! trains.
//!
//! Order is kept: the thread uploads epoch `e`, then writes its checkpoint, then takes epoch
//! `e + 1`, so a checkpoint never runs ahead of the epochs the server has stored, and a crash
//! loses nothing a retry does not redo (the server counts an epoch only once stored; a retried
//! upload replaces). The hand-off is a rendezvous: at most one epoch in the thread and one
//! waiting, which bounds the memory and makes a slow server slow training down instead of
//! piling epochs up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use anyhow::{Result, anyhow};
use protocol::worker::EpochUpload;

use crate::checkpoint::{Checkpoints, Snapshot};

/// Where an epoch's records go: the server (the worker's client), a folder (local runs), a
/// recorder (tests). Called on the pipeline's thread.
pub trait EpochSink: Send {
    fn epoch(&mut self, upload: &EpochUpload) -> Result<()>;
}

struct Handoff {
    upload: EpochUpload,
    checkpoint: Option<Snapshot>,
}

pub struct Pipeline {
    sender: Option<SyncSender<Handoff>>,
    thread: Option<JoinHandle<Result<()>>>,
    failed: Arc<AtomicBool>,
}

impl Pipeline {
    pub fn start(mut sink: Box<dyn EpochSink>, checkpoints: Option<Checkpoints>) -> Self {
        let (sender, receiver) = sync_channel::<Handoff>(0);
        let failed = Arc::new(AtomicBool::new(false));
        let flag = failed.clone();
        let thread = std::thread::Builder::new()
            .name("epoch-pipeline".into())
            .spawn(move || {
                let result = receiver.iter().try_for_each(|Handoff { upload, checkpoint }| {
                    sink.epoch(&upload)?;
                    match (&checkpoints, checkpoint) {
                        (Some(checkpoints), Some(snapshot)) => checkpoints.write(snapshot),
                        _ => Ok(()),
                    }
                });
                flag.store(result.is_err(), Ordering::Relaxed);
                result
            })
            .expect("a thread starts");
        Pipeline { sender: Some(sender), thread: Some(thread), failed }
    }

    /// Hands over a finished epoch and its checkpoint; waits only while the epoch before is
    /// still being stored. An error is the first one the thread met (on this or an earlier
    /// epoch), unchanged, so `client::Refused` still reads as a refusal.
    pub fn submit(&mut self, upload: EpochUpload, checkpoint: Option<Snapshot>) -> Result<()> {
        let sender = self.sender.as_ref().ok_or_else(|| anyhow!("the epoch pipeline has ended"))?;
        if sender.send(Handoff { upload, checkpoint }).is_err() {
            return self.finish();
        }
        Ok(())
    }

    /// Whether storing an epoch failed (the training thread stops at its next heartbeat).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Waits until every epoch handed over is stored; the first error, if any.
    pub fn finish(&mut self) -> Result<()> {
        drop(self.sender.take());
        match self.thread.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(anyhow!("the thread that stores epochs panicked")),
        }
    }
}

impl Drop for Pipeline {
    /// Cancelled or failed runs still store what was handed over, so a retry resumes after it.
    fn drop(&mut self) {
        if let Err(error) = self.finish() {
            tracing::warn!("storing the last epochs failed: {error:#}");
        }
    }
}
