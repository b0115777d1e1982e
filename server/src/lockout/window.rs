//! The sliding window both lockout backends count failures in: this
//! window's count plus the previous window's, weighted by how much of it
//! still overlaps. The Redis backend's Lua (`lua_window!`) is this code
//! again; the parity tests hold the two together.

/// A sliding-window counter in constant space: this window's count plus the
/// previous window's, weighted by how much of it still overlaps.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Window {
    pub(super) start: u64,
    pub(super) current: u32,
    pub(super) previous: u32,
}

impl Window {
    pub(super) fn roll(&mut self, now: u64, len: u64) {
        let len = len.max(1);
        let elapsed = now.saturating_sub(self.start);
        if elapsed >= 2 * len {
            *self = Window { start: now - now % len, current: 0, previous: 0 };
        } else if elapsed >= len {
            *self = Window { start: self.start + len, current: 0, previous: self.current };
        }
    }

    pub(super) fn add(&mut self, now: u64, len: u64) -> u32 {
        self.roll(now, len);
        self.current = self.current.saturating_add(1);
        self.estimate(now, len)
    }

    pub(super) fn estimate(&self, now: u64, len: u64) -> u32 {
        let len = len.max(1);
        let into = now.saturating_sub(self.start).min(len);
        let weight = (len - into) as f64 / len as f64;
        self.current + (f64::from(self.previous) * weight).round() as u32
    }
}
