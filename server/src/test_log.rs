//! Tests' capture of what a tracing-subscriber writes.

use std::io::Write;
use std::sync::Arc;

/// A writer that keeps everything written to it; clones share the bytes.
#[derive(Clone, Debug, Default)]
pub struct Capture(Arc<parking_lot::Mutex<Vec<u8>>>);

impl Capture {
    /// What was written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
