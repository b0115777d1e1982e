//! CPU time used by this process, so that a report can tell whether the load
//! generator itself was near its limit. Linux only (`/proc`); elsewhere the
//! report leaves it out.

use std::time::Duration;

/// CPU time of all this process's live threads: the first field of each
/// `/proc/self/task/TID/schedstat`, in nanoseconds. `None` when `/proc`
/// cannot tell.
pub fn process_cpu_time() -> Option<Duration> {
    let mut total: u64 = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(task) = task else { continue };
        // A thread may exit between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
        let nanos = stat.split_whitespace().next()?.parse::<u64>().ok()?;
        total = total.saturating_add(nanos);
    }
    Some(Duration::from_nanos(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn counts_work_done() {
        let before = process_cpu_time().expect("/proc/self/task");
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = process_cpu_time().expect("/proc/self/task");
        assert!(after > before);
    }
}
