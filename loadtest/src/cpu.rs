//! CPU time used by this process, so that a report can tell whether the load
//! generator itself was near its limit, and by the server under test (given
//! its pid), so that runs on machines with other core counts compare. Linux
//! only (`/proc`); elsewhere the report leaves it out.

use std::time::Duration;

/// CPU time of all this process's live threads: the first field of each
/// `/proc/self/task/TID/schedstat`, in nanoseconds. `None` when `/proc`
/// cannot tell.
pub fn process_cpu_time() -> Option<Duration> {
    tasks_cpu_time("/proc/self/task")
}

/// [`process_cpu_time`] of the process `pid` (on this machine).
pub fn pid_cpu_time(pid: u32) -> Option<Duration> {
    tasks_cpu_time(&format!("/proc/{pid}/task"))
}

/// How many CPUs the process `pid` may run on: its `Cpus_allowed_list`.
pub fn pid_allowed_cpus(pid: u32) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    count_cpu_list(list.trim())
}

/// The number of CPUs in a list such as `0-3,6,8-9`.
pub fn count_cpu_list(list: &str) -> Option<usize> {
    let mut n = 0usize;
    for part in list.split(',') {
        let count = match part.split_once('-') {
            Some((a, b)) => b.parse::<usize>().ok()?.checked_sub(a.parse::<usize>().ok()?)? + 1,
            None => {
                part.parse::<usize>().ok()?;
                1
            }
        };
        n = n.checked_add(count)?;
    }
    (n > 0).then_some(n)
}

fn tasks_cpu_time(dir: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    for task in std::fs::read_dir(dir).ok()? {
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
    fn cpu_lists_are_counted() {
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("0-1"), Some(2));
        assert_eq!(count_cpu_list("0-3,6,8-9"), Some(7));
        assert_eq!(count_cpu_list(""), None);
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("x"), None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn another_process_is_read_by_its_pid() {
        let me = std::process::id();
        assert!(pid_cpu_time(me).is_some());
        let cores = pid_allowed_cpus(me).expect("Cpus_allowed_list");
        assert!((1..=4096).contains(&cores));
        assert_eq!(pid_cpu_time(u32::MAX), None, "no such process");
    }

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
