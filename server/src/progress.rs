//! Live progress: every heartbeat and status change is published here and fanned out to
//! the server-sent-event streams.

use protocol::Progress;
use tokio::sync::broadcast;

#[derive(Clone)]
pub struct Hub {
    sender: broadcast::Sender<Progress>,
}

impl Default for Hub {
    fn default() -> Self {
        // A slow client that falls this far behind skips ahead (and gets the latest state).
        Self { sender: broadcast::channel(1024).0 }
    }
}

impl Hub {
    pub fn publish(&self, mut progress: Progress) {
        progress.published_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_millis() as u64);
        // No subscribers is fine: nobody is watching.
        let _ = self.sender.send(progress);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Progress> {
        self.sender.subscribe()
    }
}
