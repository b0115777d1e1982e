//! A run: the setup (the tokens that the scenario needs, not measured), then
//! one task per virtual user, each owning one connection, in a closed loop
//! (send, wait for the answer, send again) or an open loop (send at fixed
//! intended times, whatever the answers do), until the duration or the
//! request budget runs out. A one-line progress report goes to stderr each
//! second.
//!
//! In the open loop a request's latency is measured from its intended send
//! time, not from when it was actually sent, so a server that stalls is
//! charged for the requests that queued up behind the stall (no coordinated
//! omission).

use crate::client::{Conn, Target, TransportError};
use crate::cpu::{pid_cpu_time, process_cpu_time};
use crate::scenario::{Kind, VirtualUser, Workload, WorkloadSpec};
use crate::stats::{latency_histogram, Outcome, Recorder};
use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION};
use http::{Request, Uri};
use http_body_util::Full;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::{sleep_until, timeout_at, Instant};

/// How requests arrive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Load {
    /// Each virtual user sends its next request when the previous one is
    /// answered.
    Closed,
    /// Requests are sent at `rate` per second in all, spread evenly over the
    /// virtual users.
    Open {
        /// Requests per second.
        rate: f64,
    },
}

/// What times an open loop's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Pacer {
    /// A thread of its own on the OS's high-resolution timer (see [`pace`]):
    /// sends within tens of microseconds of the intended time, for a
    /// wake-up of that thread and one of a runtime thread per request.
    #[default]
    Thread,
    /// Each virtual user sleeps on the runtime's timer: about a millisecond
    /// late (the report's send lag says how late, and the latencies include
    /// it), with no thread of its own. For load whose own latencies do not
    /// matter, such as an attacker beside the load being measured, where
    /// the generator's CPU comes off the server's cores.
    Runtime,
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The token endpoint URL.
    pub url: Uri,
    /// CA or self-signed certificate (PEM) for https.
    pub cacert: Option<PathBuf>,
    /// The local (source) address of every connection; `None`: the system
    /// chooses.
    pub bind: Option<IpAddr>,
    /// How many consecutive local addresses from `bind` on the connections
    /// are spread over (1: all from `bind`).
    pub bind_count: u32,
    /// What to send.
    pub workload: WorkloadSpec,
    /// Virtual users, each with one connection.
    pub connections: usize,
    /// Closed or open loop.
    pub load: Load,
    /// What times the open loop's requests.
    pub pacer: Pacer,
    /// A new connection for each request instead of keep-alive.
    pub new_connection: bool,
    /// How long the measured phase lasts at most.
    pub duration: Duration,
    /// Stop after this many requests, if given.
    pub requests: Option<u64>,
    /// A request with no answer after this long is a `timeout` error.
    pub timeout: Duration,
    /// Print a progress line to stderr each second.
    pub progress: bool,
    /// How many recorders the virtual users share (one per runtime thread
    /// keeps lock contention away).
    pub shards: usize,
    /// When the measured phase starts (wall clock), after the setup; `None`:
    /// as soon as the setup is done. Lets several load generators measure
    /// the same span whatever their setups take.
    pub start_at: Option<std::time::SystemTime>,
    /// The server under test, to read its CPU time over the measured phase
    /// (it must run on this machine).
    pub server_pid: Option<u32>,
    /// How many cores the server has, for throughput per core; `None`: the
    /// CPUs `server_pid` may run on, if given.
    pub server_cores: Option<usize>,
}

/// What a run measured.
#[derive(Debug)]
pub struct Finished {
    /// All counts, merged.
    pub recorder: Recorder,
    /// Length of the measured phase.
    pub elapsed: Duration,
    /// Requests started (completed, cancelled at the deadline, or not).
    pub started: u64,
    /// CPU time this process used during the measured phase, where known.
    pub cpu: Option<Duration>,
    /// CPU time the server (`RunSpec::server_pid`) used meanwhile.
    pub server_cpu: Option<Duration>,
    /// How long after [`RunSpec::start_at`] the measured phase started,
    /// when the setup ended after it (zero otherwise).
    pub late_start: Duration,
}

/// How many setup requests run at once: password grants are expensive, and
/// a server with a bounded hash queue would refuse a burst.
const SETUP_CONCURRENCY: usize = 8;
/// How many connections [`preconnect`] opens at once.
const PRECONNECT_CONCURRENCY: usize = 64;
/// Setup requests answered `503` are retried this many times.
const SETUP_RETRIES: u32 = 20;
/// A virtual user whose connection attempt failed waits this long before
/// the next one, so a server that is down does not turn the run into a
/// busy loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

struct Shared {
    target: Target,
    workload: Workload,
    shards: Vec<Mutex<Recorder>>,
    budget: Option<u64>,
    started: AtomicU64,
    start: Instant,
    deadline: Instant,
    timeout: Duration,
    new_connection: bool,
    load: Load,
    connections: u64,
    /// Open loop with [`Pacer::Thread`]: one permit per request that is
    /// due, per virtual user, released by the pacer thread at the request's
    /// intended send time. Empty otherwise.
    due: Vec<Semaphore>,
}

impl Shared {
    fn shard(&self, vu: usize) -> MutexGuard<'_, Recorder> {
        let shard = &self.shards[vu % self.shards.len()];
        // A panic while recording cannot leave the counts inconsistent in a
        // way that matters more than losing the run.
        shard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections opened before the clock starts are not part of the
    /// measurement.
    fn forget_connects(&self) {
        for shard in &self.shards {
            shard.lock().unwrap_or_else(|e| e.into_inner()).connects = 0;
        }
    }

    /// Takes one request from the budget.
    fn take_ticket(&self) -> bool {
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        match self.budget {
            Some(budget) if n >= budget => {
                self.started.fetch_sub(1, Ordering::Relaxed);
                false
            }
            _ => true,
        }
    }

    /// Sends `request` on `conn`, opening a connection first if there is
    /// none or the server closed it; within the request timeout.
    async fn exchange(
        &self,
        vu: usize,
        conn: &mut Option<Conn>,
        mut request: Request<Full<Bytes>>,
    ) -> Result<crate::client::Reply, TransportError> {
        if self.new_connection {
            request.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        let limit = Instant::now() + self.timeout;
        let attempt = async {
            let reusable = match conn {
                Some(c) => c.is_open().await,
                None => false,
            };
            if !reusable {
                *conn = None;
                let fresh = self.target.connect().await?;
                self.shard(vu).connects += 1;
                *conn = Some(fresh);
            }
            match conn {
                Some(c) => c.send(request).await,
                None => Err(TransportError::Other),
            }
        };
        timeout_at(limit, attempt).await.unwrap_or(Err(TransportError::Timeout))
    }

    /// The intended send time of virtual user `vu`'s `k`-th request in the
    /// open loop: request number `vu + k·connections` of the whole run.
    fn intended(&self, rate: f64, vu: usize, k: u64) -> Instant {
        let n = (vu as u64).saturating_add(k.saturating_mul(self.connections));
        self.start + Duration::from_secs_f64(n as f64 / rate)
    }
}

/// Runs `spec` and returns what it measured. Fails only before the measured
/// phase: the target cannot be resolved, or the setup cannot get tokens.
pub async fn run(spec: &RunSpec) -> Result<Finished, String> {
    let target = Target::new(&spec.url, spec.cacert.as_deref(), spec.bind, spec.bind_count).await?;
    let workload = Workload::new(spec.workload.clone(), target.host.clone())?;
    let connections = spec.connections.max(1);
    let shards = spec.shards.clamp(1, connections);
    // The pacer thread's rate, when it is the pacer thread that times the
    // requests.
    let thread_rate = match (spec.load, spec.pacer) {
        (Load::Open { rate }, Pacer::Thread) => Some(rate),
        _ => None,
    };
    let mut shared = Shared {
        target,
        workload,
        shards: (0..shards).map(|_| Mutex::new(Recorder::new())).collect(),
        budget: spec.requests,
        started: AtomicU64::new(0),
        start: Instant::now(),
        deadline: Instant::now(),
        timeout: spec.timeout,
        new_connection: spec.new_connection,
        load: spec.load,
        connections: connections as u64,
        due: match thread_rate {
            Some(_) => (0..connections).map(|_| Semaphore::new(0)).collect(),
            None => Vec::new(),
        },
    };
    let users = setup(&shared, connections, spec.progress).await?;
    let mut late_start = Duration::ZERO;
    if let Some(at) = spec.start_at {
        match at.duration_since(std::time::SystemTime::now()) {
            Ok(wait) => tokio::time::sleep(wait).await,
            Err(late) => {
                late_start = late.duration();
                eprintln!("setup ended {:.3} s after --start-at: the run starts now", late_start.as_secs_f64());
            }
        }
    }
    let cpu_before = process_cpu_time();
    let server_before = spec.server_pid.and_then(pid_cpu_time);
    shared.start = Instant::now();
    shared.deadline = shared.start + spec.duration;
    let shared = Arc::new(shared);

    let stop = Arc::new(AtomicBool::new(false));
    let _stop_pacer = StopOnDrop(Arc::clone(&stop));
    let pacer = match thread_rate {
        None => None,
        Some(rate) => {
            let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
            let pacer = std::thread::Builder::new().name("pacer".into()).spawn(move || pace(&shared, rate, &stop));
            Some(pacer.map_err(|e| format!("cannot start the pacer thread: {e}"))?)
        }
    };
    let progress = spec.progress.then(|| tokio::spawn(progress(Arc::clone(&shared))));
    let tasks: Vec<_> = users
        .into_iter()
        .enumerate()
        .map(|(i, (vu, conn))| tokio::spawn(virtual_user(Arc::clone(&shared), i, vu, conn)))
        .collect();
    for task in tasks {
        if let Err(e) = task.await {
            return Err(format!("a virtual user failed: {e}"));
        }
    }
    let end = Instant::now().min(shared.deadline);
    stop.store(true, Ordering::Relaxed);
    if let Some(pacer) = pacer {
        // It sleeps at most PACER_MAX_SLEEP at a time.
        let _ = pacer.join();
    }
    let cpu = process_cpu_time().zip(cpu_before).map(|(after, before)| after.saturating_sub(before));
    let server_cpu =
        spec.server_pid.and_then(pid_cpu_time).zip(server_before).map(|(after, before)| after.saturating_sub(before));
    if let Some(progress) = progress {
        progress.abort();
    }
    let mut recorder = Recorder::new();
    for shard in &shared.shards {
        recorder.merge(&shard.lock().unwrap_or_else(|e| e.into_inner()));
    }
    Ok(Finished {
        recorder,
        elapsed: end - shared.start,
        started: shared.started.load(Ordering::Relaxed),
        cpu,
        server_cpu,
        late_start,
    })
}

/// Creates the virtual users and gets each the token its scenario needs, on
/// the connection it will keep.
async fn setup(
    shared: &Shared,
    connections: usize,
    progress: bool,
) -> Result<Vec<(VirtualUser, Option<Conn>)>, String> {
    let count = connections as u64;
    let mut users: Vec<_> = (0..count).map(|i| (VirtualUser::new(i, count), None)).collect();
    let needs_setup = {
        let mut probe = VirtualUser::new(0, count);
        shared.workload.setup(&mut probe).is_some()
    };
    if !needs_setup {
        if !shared.new_connection {
            preconnect(shared, &mut users).await;
        }
        return Ok(users);
    }
    if progress {
        eprintln!("setup: getting a token for each of {connections} virtual users");
    }
    let permits = Semaphore::new(SETUP_CONCURRENCY);
    let jobs = users.iter_mut().enumerate().map(|(i, (vu, conn))| {
        let permits = &permits;
        async move {
            let _permit = permits.acquire().await.map_err(|e| e.to_string())?;
            let mut tries = 0;
            while let Some((kind, request)) = shared.workload.setup(vu) {
                let outcome = match shared.exchange(i, conn, request).await {
                    Ok(reply) => shared.workload.absorb(vu, kind, &reply),
                    Err(e) => {
                        *conn = None;
                        Outcome::Transport(e.label())
                    }
                };
                let retry =
                    matches!(outcome, Outcome::Status { status: 503, .. }) || outcome == Outcome::Transport("timeout");
                if outcome != Outcome::Success && !(retry && tries < SETUP_RETRIES) {
                    return Err(setup_failure(i, kind, &outcome));
                }
                if outcome != Outcome::Success {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Ok::<(), String>(())
        }
    });
    // The jobs borrow the users: run them concurrently on this task.
    let results = join_all(jobs.collect()).await;
    results.into_iter().collect::<Result<Vec<()>, String>>()?;
    if shared.new_connection {
        users.iter_mut().for_each(|(_, conn)| *conn = None);
    }
    shared.forget_connects();
    Ok(users)
}

/// Keep-alive runs with nothing to set up still open every virtual user's
/// connection before the clock starts, as the scenarios with a setup do, so
/// that connection set-up is not part of the first requests' latency. A
/// connection that cannot be opened now is left to the measured phase,
/// which retries it and counts the failure.
async fn preconnect(shared: &Shared, users: &mut [(VirtualUser, Option<Conn>)]) {
    let permits = Semaphore::new(PRECONNECT_CONCURRENCY);
    let jobs = users.iter_mut().map(|(_, conn)| {
        let permits = &permits;
        async move {
            if let Ok(_permit) = permits.acquire().await {
                let connect = tokio::time::timeout(shared.timeout, shared.target.connect());
                *conn = connect.await.ok().and_then(Result::ok);
            }
        }
    });
    join_all(jobs.collect()).await;
    shared.forget_connects();
}

fn setup_failure(vu: usize, kind: Kind, outcome: &Outcome) -> String {
    let what = match outcome {
        Outcome::Success => "succeeded".to_owned(),
        Outcome::Status { status, oauth_error } => format!("HTTP {status} {}", oauth_error.as_deref().unwrap_or("")),
        Outcome::Unexpected { status, what } => format!("HTTP {status}: {what}"),
        Outcome::Transport(label) => format!("no response ({label})"),
    };
    format!("setup failed: the {} grant of virtual user {vu} got {}", kind.name(), what.trim_end())
}

/// Polls `futures` together on the current task until all are done.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *output = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// The longest the pacer sleeps before it looks at the stop flag again.
const PACER_MAX_SLEEP: Duration = Duration::from_millis(20);

/// The open loop's clock, on a thread of its own: releases request `n` of
/// the run (virtual user `n % connections`, its request `n / connections`)
/// at its intended send time, until the deadline or `stop`.
///
/// The runtime's timer cannot do this: it has a resolution of one
/// millisecond and wakes up to two milliseconds late, and since latency is
/// measured from the intended send time, that lateness would be counted as
/// the server's. A thread sleeping on the OS's high-resolution timer wakes
/// within tens of microseconds; how late each request actually went out
/// is recorded as the report's send lag.
fn pace(shared: &Shared, rate: f64, stop: &AtomicBool) {
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let vu = (n % shared.connections) as usize;
        let at = shared.intended(rate, vu, n / shared.connections);
        if at >= shared.deadline {
            break;
        }
        let now = Instant::now();
        if at > now {
            std::thread::sleep((at - now).min(PACER_MAX_SLEEP));
            continue;
        }
        shared.due[vu].add_permits(1);
        n += 1;
    }
    // No virtual user waits for a permit that is not released here: each
    // stops by itself at its first request due at or after the deadline.
}

/// Sets the pacer's stop flag when dropped, so that a run that ends early
/// (an error, or its future dropped) does not leave the pacer running.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One virtual user's measured loop.
async fn virtual_user(shared: Arc<Shared>, index: usize, mut vu: VirtualUser, mut conn: Option<Conn>) {
    let deadline = sleep_until(shared.deadline);
    tokio::pin!(deadline);
    let mut k = 0u64;
    loop {
        let intended = match shared.load {
            Load::Closed => None,
            Load::Open { rate } => {
                let at = shared.intended(rate, index, k);
                k += 1;
                if at >= shared.deadline {
                    break;
                }
                match shared.due.get(index) {
                    // The pacer releases one permit per request of this
                    // virtual user at its intended time (permits pile up
                    // while it is behind).
                    Some(due) => match due.acquire().await {
                        Ok(permit) => permit.forget(),
                        Err(_) => break,
                    },
                    // Pacer::Runtime.
                    None => sleep_until(at).await,
                }
                Some(at)
            }
        };
        if Instant::now() >= shared.deadline || !shared.take_ticket() {
            break;
        }
        let (kind, request) = shared.workload.next(&mut vu);
        let sent = Instant::now();
        if let Some(at) = intended {
            shared.shard(index).record_send_lag(sent.saturating_duration_since(at));
        }
        let began = intended.unwrap_or(sent);
        let result = tokio::select! {
            biased;
            () = &mut deadline => {
                shared.shard(index).cancelled += 1;
                break;
            }
            result = shared.exchange(index, &mut conn, request) => result,
        };
        let done = Instant::now();
        let outcome = match result {
            Ok(reply) => shared.workload.absorb(&mut vu, kind, &reply),
            Err(e) => {
                conn = None;
                Outcome::Transport(e.label())
            }
        };
        // An answer that the deadline raced still counts in the last second.
        let at = done.min(shared.deadline - Duration::from_nanos(1)) - shared.start;
        shared.shard(index).record(kind, &outcome, done - began, at);
        if shared.new_connection {
            conn = None;
        }
        let refused = matches!(outcome, Outcome::Transport(l) if l == TransportError::Connect.label());
        if refused && shared.load == Load::Closed {
            let pause = sleep_until((done + CONNECT_BACKOFF).min(shared.deadline));
            pause.await;
        }
    }
}

/// Prints one line per second: the last second's throughput, errors and
/// latency, and the total so far.
async fn progress(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval_at(shared.start + Duration::from_secs(1), Duration::from_secs(1));
    let mut second = 0usize;
    loop {
        tick.tick().await;
        let mut requests = 0;
        let mut successes = 0;
        let mut total = 0;
        let mut latency = latency_histogram(2);
        for shard in &shared.shards {
            let r = shard.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(b) = r.timeline.get(second) {
                requests += b.requests;
                successes += b.successes;
                let _ = latency.add(&b.latency);
            }
            total += r.requests();
        }
        second += 1;
        let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
        eprintln!(
            "[{second:>4}s] {requests:>8} req/s  errors {:>6}  p50 {:>8.3} ms  p99 {:>8.3} ms  total {total}",
            requests - successes,
            ms(0.5),
            ms(0.99),
        );
    }
}
