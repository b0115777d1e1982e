//! The hash pool: a fixed set of worker threads fed by a bounded queue.
//!
//! - `try_submit` never blocks: a full queue is answered at once, so the
//!   token endpoint can send `503` + `Retry-After` instead of letting
//!   latency grow without bound.
//! - Each worker keeps its argon2 memory between hashes, which roughly
//!   halves the cost of a verification at OWASP parameters (no 19 MiB
//!   allocation and page faults per hash).
//! - Workers measure their hash time, so `Retry-After` is estimated as
//!   queue length × hash time ÷ workers.
//! - The queue is bounded by the wait it implies, not only by its length: a
//!   job that would wait longer than `max_queue_wait` before a worker takes
//!   it is refused at once. The wait is the hashes ahead of it, per worker,
//!   at the measured mean (scaled by how such estimates compared with the
//!   waits jobs then had) and with their measured spread: a bound that 99
//!   jobs in 100 stay under, not their average wait. A login told to retry
//!   at once is better off than one answered after a second; the length
//!   bound stays as a backstop, and applies alone until the first hash has
//!   been timed.
//! - A submitter never waits for a worker, even for an instant. The hash
//!   workers run at a lower priority than the request threads, and a
//!   low-priority thread can be kept off the CPU for a long time: a request
//!   thread spinning until such a worker finished taking a job would stall
//!   every request queued on it. (A bounded crossbeam channel does spin so:
//!   when it is full and a worker has claimed the oldest slot but not yet
//!   released it, `try_send` spins until it does, and with the workers at
//!   a low priority "until" has no bound.) So admission is an
//!   atomic counter, the jobs wait in a `SegQueue`, whose `push` waits for
//!   nothing but other pushers, and a submitter wakes a sleeping worker with
//!   `unpark`, which waits for nothing.

use super::{hash_password, HashJob, HashPriority, PasswordVerifier, Pending, PendingHash, VerifyError, VerifyJob};
use crossbeam_queue::SegQueue;
use ropc_metrics::Histogram;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

enum Job {
    Verify(VerifyJob, oneshot::Sender<bool>),
    Hash(HashJob, oneshot::Sender<Result<String, crate::HashError>>),
}

/// A job in the queue, with when it came and the wait it was expected to
/// have (the jobs ahead at the mean hash time), to hold that expectation to
/// what the wait turned out to be.
struct Queued {
    job: Job,
    at: Instant,
    expected_ns: u64,
}

#[derive(Debug, Default)]
struct Stats {
    /// Exponentially weighted mean hash time, in nanoseconds.
    mean_hash_ns: AtomicU64,
    /// Exponentially weighted mean of a hash time's distance from that
    /// mean, in nanoseconds: how much hash times spread.
    spread_hash_ns: AtomicU64,
    busy: AtomicUsize,
    completed: AtomicU64,
    shed: AtomicU64,
    /// Of `shed`, the jobs refused for the wait they would have had.
    shed_wait: AtomicU64,
    /// Moving mean of a job's actual wait ÷ the wait expected of it, in
    /// thousandths (0: none measured yet, taken as 1). Under load the
    /// workers lose time between hashes (a nice-19 thread waits for a core
    /// to take its next job) that no hash time shows.
    wait_scale_milli: AtomicU64,
    /// Jobs dropped unhashed: nobody awaited the answer any more.
    skipped: AtomicU64,
    hash_time: Histogram,
}

/// The jobs admitted and not yet taken by a worker, and the workers that
/// sleep until there is one.
struct Queue {
    jobs: SegQueue<Queued>,
    /// Jobs admitted and not yet taken: at most `capacity`.
    len: AtomicUsize,
    capacity: usize,
    workers: Vec<Worker>,
    closed: AtomicBool,
}

#[derive(Default)]
struct Worker {
    /// Set by `HashPool::new` once the thread is spawned, so before any
    /// submitter exists.
    thread: OnceLock<Thread>,
    /// The worker found the queue empty and sleeps, or is about to.
    sleeping: AtomicBool,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("len", &self.len).field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

impl Queue {
    /// Admits `job` unless `capacity` jobs wait already; wakes a sleeping
    /// worker for it. Waits for nothing the workers hold. (A refused push
    /// raises `len` above `capacity` for an instant, which can refuse a
    /// concurrent one too: the queue is full either way.)
    fn push(&self, job: Queued) -> Result<(), Queued> {
        if self.len.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.len.fetch_sub(1, Ordering::AcqRel);
            return Err(job);
        }
        self.jobs.push(job);
        // Pairs with the fence in `pop_or_sleep`: either this sees the
        // worker's `sleeping` flag, or the worker's second look sees the job.
        fence(Ordering::SeqCst);
        for worker in &self.workers {
            if worker.sleeping.load(Ordering::Relaxed) && worker.sleeping.swap(false, Ordering::AcqRel) {
                if let Some(thread) = worker.thread.get() {
                    thread.unpark();
                }
                break;
            }
        }
        Ok(())
    }

    /// The next job for worker `me`, sleeping until there is one; `None`
    /// once the pool is closed.
    fn pop_or_sleep(&self, me: &Worker) -> Option<Queued> {
        loop {
            if let Some(job) = self.jobs.pop() {
                self.len.fetch_sub(1, Ordering::AcqRel);
                return Some(job);
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            me.sleeping.store(true, Ordering::Relaxed);
            // Pairs with the fence in `push`: a job pushed before the flag
            // was seen is seen here, and the loop takes it.
            fence(Ordering::SeqCst);
            if self.jobs.is_empty() && !self.closed.load(Ordering::Acquire) {
                // An unpark that came first makes this return at once; a
                // spurious return just looks again.
                thread::park();
            }
            me.sleeping.store(false, Ordering::Relaxed);
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for worker in &self.workers {
            if let Some(thread) = worker.thread.get() {
                thread.unpark();
            }
        }
    }
}

/// A bounded pool of hash worker threads.
#[derive(Debug)]
pub struct HashPool {
    queue: Arc<Queue>,
    stats: Arc<Stats>,
    /// The longest a job may expect to wait for a worker, in nanoseconds
    /// (0: no bound but the queue's length).
    max_wait_ns: u64,
}

impl HashPool {
    /// Starts `workers` threads (0: one per core) behind a queue of
    /// `queue` jobs (0: 64 per worker), each scheduled at `priority` (see
    /// [`lower_priority`]).
    pub fn new(workers: usize, queue: usize, priority: HashPriority) -> std::io::Result<Self> {
        let workers = if workers == 0 { thread::available_parallelism().map_or(1, |n| n.get()) } else { workers };
        let capacity = if queue == 0 { workers * 64 } else { queue };
        let queue = Arc::new(Queue {
            jobs: SegQueue::new(),
            len: AtomicUsize::new(0),
            capacity,
            workers: (0..workers).map(|_| Worker::default()).collect(),
            closed: AtomicBool::new(false),
        });
        let stats = Arc::new(Stats::default());
        for i in 0..workers {
            let (for_worker, stats) = (Arc::clone(&queue), Arc::clone(&stats));
            let spawned = thread::Builder::new().name(format!("ropc-hash-{i}")).spawn(move || {
                if let Err(e) = lower_priority(priority) {
                    tracing::warn!(?priority, error = %e, "cannot lower the hash worker's priority");
                }
                work(&for_worker, &for_worker.workers[i], &stats)
            });
            match spawned {
                Ok(handle) => {
                    let _ = queue.workers[i].thread.set(handle.thread().clone());
                }
                Err(e) => {
                    // The workers already started would otherwise sleep forever.
                    queue.close();
                    return Err(e);
                }
            }
        }
        Ok(Self { queue, stats, max_wait_ns: 0 })
    }

    /// Refuses a job whose expected wait for a worker (the jobs ahead of
    /// it × the measured hash time ÷ the workers) exceeds `max_wait`;
    /// `Duration::ZERO` bounds the queue by its length only.
    pub fn with_max_queue_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait_ns = u64::try_from(max_wait.as_nanos()).unwrap_or(u64::MAX);
        self
    }

    /// The bound set by [`HashPool::with_max_queue_wait`].
    pub fn max_queue_wait(&self) -> Duration {
        Duration::from_nanos(self.max_wait_ns)
    }

    /// Of [`HashPool::shed`], the jobs refused for the wait they would
    /// have had rather than for a full queue.
    pub fn shed_for_wait(&self) -> u64 {
        self.stats.shed_wait.load(Ordering::Relaxed)
    }

    /// How long a job submitted now may wait for a worker, 99 times in
    /// 100: the jobs ahead of it shared among the workers, `n` each, take
    /// n × the mean hash time, give or take √n × their spread (σ, about
    /// 1.25 × the mean absolute deviation measured), and the 99th percentile
    /// of that sum is 2.33 σ above it. Zero until a hash has been timed.
    ///
    /// The mean part is scaled by how the waits expected so far compared
    /// with the waits jobs then had.
    pub fn expected_wait(&self) -> Duration {
        let (mean_part, spread_part) = self.wait_parts();
        self.scaled_wait(mean_part, spread_part)
    }

    /// The wait from its two parts, the mean part scaled by what earlier
    /// estimates turned out to be.
    fn scaled_wait(&self, mean_part: f64, spread_part: f64) -> Duration {
        let scale = match self.stats.wait_scale_milli.load(Ordering::Relaxed) {
            0 => 1.0,
            milli => milli as f64 / 1000.0,
        };
        Duration::from_nanos((mean_part * scale + spread_part) as u64)
    }

    /// The wait of the jobs ahead at the mean hash time, and its 99th
    /// percentile's margin from their spread, in nanoseconds.
    fn wait_parts(&self) -> (f64, f64) {
        let mean = self.stats.mean_hash_ns.load(Ordering::Relaxed) as f64;
        let sigma = 1.25 * self.stats.spread_hash_ns.load(Ordering::Relaxed) as f64;
        let per_worker = self.queue_len() as f64 / self.workers().max(1) as f64;
        (per_worker * mean, 2.33 * per_worker.sqrt() * sigma)
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        self.queue.workers.len()
    }

    /// The queue's capacity.
    pub fn capacity(&self) -> usize {
        self.queue.capacity
    }

    /// Workers hashing right now.
    pub fn busy(&self) -> usize {
        self.stats.busy.load(Ordering::Relaxed)
    }

    /// Jobs refused because the queue was full.
    pub fn shed(&self) -> u64 {
        self.stats.shed.load(Ordering::Relaxed)
    }

    /// Jobs dropped without hashing because their answer was no longer
    /// awaited (the client went away, or its username was locked while the
    /// job waited).
    pub fn skipped(&self) -> u64 {
        self.stats.skipped.load(Ordering::Relaxed)
    }

    /// Jobs completed.
    pub fn completed(&self) -> u64 {
        self.stats.completed.load(Ordering::Relaxed)
    }

    /// Hash times, as measured by the workers.
    pub fn hash_time(&self) -> &Histogram {
        &self.stats.hash_time
    }

    /// The mean time of one hash, as measured by the workers.
    pub fn mean_hash_time(&self) -> Duration {
        Duration::from_nanos(self.stats.mean_hash_ns.load(Ordering::Relaxed))
    }

    fn submit(&self, job: Job) -> Result<(), VerifyError> {
        // Concurrent submitters may all see the same queue and all be
        // admitted, a few jobs past the bound: the length bound still holds.
        let (mean_part, spread_part) = self.wait_parts();
        let job = Queued { job, at: Instant::now(), expected_ns: mean_part as u64 };
        if self.max_wait_ns != 0 && self.scaled_wait(mean_part, spread_part).as_nanos() > u128::from(self.max_wait_ns) {
            self.stats.shed.fetch_add(1, Ordering::Relaxed);
            self.stats.shed_wait.fetch_add(1, Ordering::Relaxed);
            return Err(VerifyError::Overloaded { retry_after: self.retry_after() });
        }
        match self.queue.push(job) {
            Ok(()) => Ok(()),
            Err(_) => {
                self.stats.shed.fetch_add(1, Ordering::Relaxed);
                Err(VerifyError::Overloaded { retry_after: self.retry_after() })
            }
        }
    }

    /// Appends the pool's metrics.
    pub fn write_metrics(&self, out: &mut ropc_metrics::Exposition) {
        out.gauge("ropc_hash_workers", "Hash worker threads.", self.workers());
        out.gauge("ropc_hash_busy_workers", "Hash workers hashing now.", self.busy());
        out.gauge("ropc_hash_queue_length", "Verifications waiting for a worker.", self.queue_len());
        out.gauge("ropc_hash_queue_capacity", "Verifications that may wait before 503.", self.capacity());
        out.counter("ropc_hash_completed_total", "Password hashes computed.", self.completed());
        out.counter(
            "ropc_hash_skipped_total",
            "Queued hashes dropped unhashed: their answer was no longer awaited.",
            self.skipped(),
        );
        out.counter(
            "ropc_hash_shed_total",
            "Verifications refused with 503: the queue full, or its wait over max_queue_wait_ms.",
            self.shed(),
        );
        out.counter(
            "ropc_hash_shed_wait_total",
            "Of ropc_hash_shed_total, those refused for the wait they would have had.",
            self.shed_for_wait(),
        );
        out.gauge(
            "ropc_hash_queue_wait_seconds",
            "The wait for a worker a verification submitted now stays under 99 times in 100 (estimated).",
            self.expected_wait().as_secs_f64(),
        );
        out.histogram("ropc_hash_duration_seconds", "Time of one password hash.", self.hash_time());
    }

    fn retry_after(&self) -> Duration {
        let per_hash = self.mean_hash_time().max(Duration::from_millis(1));
        let workers = self.workers();
        let queued = u32::try_from(self.queue_len() + workers).unwrap_or(u32::MAX);
        per_hash.saturating_mul(queued) / u32::try_from(workers.max(1)).unwrap_or(1)
    }
}

impl PasswordVerifier for HashPool {
    fn try_submit(&self, work: VerifyJob) -> Result<Pending, VerifyError> {
        let (reply, pending) = Pending::channel();
        self.submit(Job::Verify(work, reply))?;
        Ok(pending)
    }

    fn try_submit_hash(&self, job: HashJob) -> Result<PendingHash, VerifyError> {
        let (reply, pending) = oneshot::channel();
        self.submit(Job::Hash(job, reply))?;
        Ok(pending)
    }

    fn queue_len(&self) -> usize {
        self.queue.len.load(Ordering::Relaxed)
    }
}

impl Drop for HashPool {
    /// The workers finish the jobs already queued, then exit.
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// Lowers the calling thread's scheduling priority to `priority`
/// (`Nice(0)` leaves it alone).
///
/// Hash workers run below the async request threads so that refresh,
/// client-credentials, introspection and revocation, which never queue for a
/// hash, do not wait for a core behind one either: a waking request thread
/// preempts a hash worker, and the hash workers still get every cycle the
/// request threads leave. At nice 19 a hash worker weighs 15 against a
/// request thread's 1024; under `SCHED_IDLE` it weighs 3 and any waking
/// thread of the normal policy preempts it. On Linux both are per thread
/// (`setpriority(PRIO_PROCESS, tid)`, `sched_setscheduler(0)`) and need no
/// privilege.
pub fn lower_priority(priority: HashPriority) -> std::io::Result<()> {
    if priority == HashPriority::Nice(0) {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        let rc = match priority {
            // SAFETY: a plain system call on the calling thread's own id;
            // no memory is passed.
            HashPriority::Nice(nice) => unsafe {
                libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice)
            },
            HashPriority::Idle => {
                let param = libc::sched_param { sched_priority: 0 };
                // SAFETY: pid 0 is the calling thread; `param` is a valid
                // sched_param that outlives the call.
                unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) }
            }
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "per-thread priority is set on Linux only"))
    }
}

fn work(queue: &Queue, me: &Worker, stats: &Stats) {
    let mut memory = crate::HashMemory::huge_pages();
    while let Some(Queued { job, at, expected_ns }) = queue.pop_or_sleep(me) {
        // Waits too short to tell anything (an idle pool) are left out.
        if expected_ns >= 1_000_000 {
            let waited = u64::try_from(at.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let ratio = (waited.saturating_mul(1000) / expected_ns).clamp(500, 4000);
            let old = stats.wait_scale_milli.load(Ordering::Relaxed);
            stats.wait_scale_milli.store(ropc_metrics::moving_mean(old, ratio, 16), Ordering::Relaxed);
        }
        // The client may have gone away, or its attempt been abandoned,
        // while the job waited: skip the hash.
        let closed = match &job {
            Job::Verify(_, reply) => reply.is_closed(),
            Job::Hash(_, reply) => reply.is_closed(),
        };
        if closed {
            stats.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if let Job::Verify(work, _) = &job {
            if let Some(started) = &work.started {
                started.store(true, Ordering::Relaxed);
            }
        }
        stats.busy.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        // A panic in a hash (none is known; the legacy schemes already catch
        // theirs) must not kill the worker: its job's caller sees the
        // verifier unavailable (503), and the worker takes the next job.
        let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match job {
            Job::Verify(work, reply) => {
                let matched = work.hash.verify_with_memory(&work.password, &mut memory);
                drop(work);
                Ok((matched, reply))
            }
            Job::Hash(work, reply) => {
                let _ = reply.send(hash_password(&work.password, work.params));
                Err(())
            }
        }))
        .unwrap_or_else(|_| {
            memory = crate::HashMemory::huge_pages();
            Err(())
        });
        let elapsed = start.elapsed();
        stats.hash_time.observe(elapsed);
        let took = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        stats.busy.fetch_sub(1, Ordering::Relaxed);
        let old = stats.mean_hash_ns.load(Ordering::Relaxed);
        let mean = ropc_metrics::moving_mean(old, took, 8);
        stats.mean_hash_ns.store(mean, Ordering::Relaxed);
        // The first hash has no mean to be compared with.
        if old != 0 {
            let spread = ropc_metrics::moving_mean(stats.spread_hash_ns.load(Ordering::Relaxed), took.abs_diff(old), 8);
            stats.spread_hash_ns.store(spread, Ordering::Relaxed);
        }
        stats.completed.fetch_add(1, Ordering::Relaxed);
        if let Ok((matched, reply)) = answer {
            let _ = reply.send(matched);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{hash_password, HashParams, StoredHash};
    use zeroize::Zeroizing;

    /// Each priority reaches the calling thread only, as the OS reports it.
    #[cfg(target_os = "linux")]
    #[test]
    fn each_priority_lowers_the_calling_thread_only() {
        // SAFETY (all three): plain queries of the calling thread's own
        // policy and nice value; no memory is passed.
        let policy = || unsafe { libc::sched_getscheduler(0) };
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let on_a_thread = move |priority| {
            thread::spawn(move || {
                lower_priority(priority).unwrap();
                (policy(), nice())
            })
            .join()
            .unwrap()
        };
        let before = (policy(), nice());
        // Nice 19 can always be reached without privilege, whatever the
        // test process's own nice value.
        assert_eq!(on_a_thread(HashPriority::Nice(19)), (before.0, 19));
        assert_eq!(on_a_thread(HashPriority::Idle).0, libc::SCHED_IDLE);
        // The test's own thread kept its policy and nice value.
        assert_eq!((policy(), nice()), before);
    }

    fn job(hash: &Arc<StoredHash>, password: &str) -> VerifyJob {
        VerifyJob { password: Zeroizing::new(password.as_bytes().to_vec()), hash: Arc::clone(hash), started: None }
    }

    #[tokio::test]
    async fn verifies_and_sheds() {
        let params = HashParams { m_cost: 256, t_cost: 1, p_cost: 1 };
        let hash = Arc::new(StoredHash::parse(&hash_password(b"pw", params).unwrap()).unwrap());
        let pool = HashPool::new(1, 2, HashPriority::Nice(0)).unwrap();
        assert!(pool.try_submit(job(&hash, "pw")).unwrap().await.unwrap());
        assert!(!pool.try_submit(job(&hash, "nope")).unwrap().await.unwrap());
        // Flood the queue: with one worker and room for two jobs, some
        // submissions must be refused at once.
        let mut accepted = Vec::new();
        let mut refused = 0;
        for _ in 0..50 {
            match pool.try_submit(job(&hash, "pw")) {
                Ok(p) => accepted.push(p),
                Err(VerifyError::Overloaded { retry_after }) => {
                    assert!(retry_after > Duration::ZERO);
                    refused += 1
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(refused > 0 && !accepted.is_empty());
        assert_eq!(pool.shed(), refused);
        for p in accepted {
            assert!(p.await.unwrap());
        }
    }

    #[tokio::test]
    async fn a_job_that_would_wait_too_long_is_refused_at_once() {
        let params = HashParams { m_cost: 8192, t_cost: 2, p_cost: 1 };
        let hash = Arc::new(StoredHash::parse(&hash_password(b"pw", params).unwrap()).unwrap());
        let max_wait = Duration::from_millis(40);
        let pool = HashPool::new(1, 1000, HashPriority::Nice(0)).unwrap().with_max_queue_wait(max_wait);
        // Until a hash has been timed, only the length bounds the queue.
        assert_eq!(pool.expected_wait(), Duration::ZERO);
        for _ in 0..3 {
            assert!(pool.try_submit(job(&hash, "pw")).unwrap().await.unwrap());
        }
        let mean = pool.mean_hash_time();
        assert!(mean > Duration::ZERO);
        let (mut accepted, mut refused) = (Vec::new(), 0u64);
        for _ in 0..200 {
            match pool.try_submit(job(&hash, "pw")) {
                Ok(p) => accepted.push(p),
                Err(VerifyError::Overloaded { retry_after }) => {
                    // The queue's mean wait, at least.
                    assert!(retry_after >= max_wait / 2, "{retry_after:?}");
                    refused += 1;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        // The queue, with room for 1,000, held about max_wait ÷ mean jobs
        // (twice that and a few more, as the mean moves while jobs finish).
        let bound = (2.0 * max_wait.as_secs_f64() / mean.as_secs_f64()) as usize + 3;
        assert!(!accepted.is_empty() && accepted.len() <= bound, "{} admitted, mean {mean:?}", accepted.len());
        assert_eq!((pool.shed(), pool.shed_for_wait()), (refused, refused));
        for p in accepted {
            assert!(p.await.unwrap());
        }
        // Drained, a job is admitted again.
        assert!(pool.try_submit(job(&hash, "pw")).unwrap().await.unwrap());
    }

    /// Workers go to sleep between bursts and must be woken for every job:
    /// a lost wake-up would leave a job waiting forever (caught by the
    /// timeout).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn every_job_is_taken_after_the_workers_slept() {
        let params = HashParams { m_cost: 8, t_cost: 1, p_cost: 1 };
        let hash = Arc::new(StoredHash::parse(&hash_password(b"pw", params).unwrap()).unwrap());
        let pool = Arc::new(HashPool::new(3, 6, HashPriority::Nice(0)).unwrap());
        for round in 0..200 {
            let submitters: Vec<_> = (0..4)
                .map(|_| {
                    let (pool, hash) = (Arc::clone(&pool), Arc::clone(&hash));
                    tokio::spawn(async move {
                        let mut done = 0;
                        for _ in 0..2 {
                            if let Ok(p) = pool.try_submit(job(&hash, "pw")) {
                                let answer = tokio::time::timeout(Duration::from_secs(10), p).await;
                                assert!(answer.expect("a job was never taken").unwrap());
                                done += 1;
                            }
                        }
                        done
                    })
                })
                .collect();
            let mut done = 0;
            for s in submitters {
                done += s.await.unwrap();
            }
            assert!(done > 0, "round {round}: nothing was admitted");
            // Let every worker find the queue empty and go to sleep.
            if round % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        assert_eq!(pool.queue_len(), 0);
    }
}
