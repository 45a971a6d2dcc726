//! The worker's log on its way to the server: every tracing event is also kept here, without
//! colours, until the job client sends it (`POST /worker/jobs/{job}/log`, with each heartbeat
//! and before the end), so a job's log tail shows on its run page wherever the worker runs.

use std::io::Write;
use std::sync::Mutex;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Lines kept while the server cannot be reached: the newest.
const KEPT: usize = 1000;

/// A `MakeWriter` for tracing_subscriber: each event's text becomes lines here.
pub struct Capture;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = EventText;

    fn make_writer(&'a self) -> EventText {
        EventText(Vec::new())
    }
}

/// One event's text, kept when the formatter is done with it.
pub struct EventText(Vec<u8>);

impl Write for EventText {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventText {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        push(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned));
    }
}

/// Adds lines (the worker's own notes, say), keeping the newest [`KEPT`].
pub fn push(lines: impl IntoIterator<Item = String>) {
    let mut kept = LINES.lock().unwrap_or_else(|e| e.into_inner());
    kept.extend(lines);
    let excess = kept.len().saturating_sub(KEPT);
    kept.drain(..excess);
}

/// Takes every line not yet sent.
pub fn drain() -> Vec<String> {
    std::mem::take(&mut *LINES.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Puts lines back after a failed send, before any newer ones.
pub fn restore(mut lines: Vec<String>) {
    let mut kept = LINES.lock().unwrap_or_else(|e| e.into_inner());
    lines.append(&mut kept);
    *kept = lines;
    let excess = kept.len().saturating_sub(KEPT);
    kept.drain(..excess);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    #[test]
    fn events_become_lines_and_drain_once() {
        drain();
        let mut writer = Capture.make_writer();
        writer.write_all(b"first line\nsecond line\n").unwrap();
        drop(writer);
        push(["a note".to_owned()]);
        assert_eq!(drain(), vec!["first line", "second line", "a note"]);
        assert!(drain().is_empty());
        restore(vec!["unsent".into()]);
        push(["newer".to_owned()]);
        assert_eq!(drain(), vec!["unsent", "newer"]);
    }
}
