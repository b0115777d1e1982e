//! Pools of open connections, one per identity: the service account's
//! (bound once, when opened, and never rebound) and the users' binds (each
//! operation binds first: a bind changes the connection's identity).
//!
//! - Reused: an operation takes the most recently returned idle
//!   connection; one the directory closed (its driver ended) or idle for
//!   [`MAX_IDLE`] is dropped instead (AD drops idle connections after 15
//!   minutes, firewalls and load balancers often sooner, and silently).
//! - Bounded: at most `max_connections` idle per pool; the manager's
//!   `Health::admit` caps the operations in flight at the same number, so
//!   no pool has more open at once.
//! - Replaced: a connection whose operation failed in any way other than
//!   an LDAP result is dropped. If it was a reused one that broke before
//!   any answer (closed, reset: the directory dropped it while idle), the
//!   operation runs once more on a new connection; not after a timeout
//!   (the directory may be working on it: a second bind could count twice
//!   towards its lockout), and never after an answer.
//! - Guarded: ldap3 panics on some malformed answers (a diagnostic message
//!   that is not UTF-8); such a panic is caught and the connection dropped.

use super::connect::{Conn, Connector};
use crate::redact::Secret;
use ldap3::{Ldap, LdapError, LdapResult, Scope, SearchOptions, SearchResult};
use parking_lot::Mutex;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// An idle connection older than this is closed rather than reused.
pub const MAX_IDLE: Duration = Duration::from_secs(60);

/// Why the directory gave no usable answer (it is logged, and counts
/// towards opening the circuit). Never holds a password.
#[derive(Debug)]
pub struct Fault(pub String);

/// Who a pool's connections are bound as.
pub enum Identity {
    /// The service account: bound when the connection opens.
    Service {
        /// Its DN.
        dn: String,
        /// Its password.
        password: Secret,
    },
    /// Whoever the operation binds as.
    Binds,
}

/// One operation, on one connection.
#[derive(Clone, Copy, Debug)]
pub enum Op<'a> {
    /// A simple bind.
    Bind {
        /// As whom.
        dn: &'a str,
        /// Never empty: such a bind is refused here, unsent.
        password: &'a str,
    },
    /// A search of at most two entries.
    Search {
        /// Where.
        base: &'a str,
        /// How deep.
        scope: Scope,
        /// For what.
        filter: &'a str,
        /// Which attributes (`["1.1"]`: none).
        attrs: &'a [&'a str],
    },
    /// A bind (anonymous when `password` is empty) and, if it succeeds, a
    /// base read of `dn` with that identity.
    BindThenRead {
        /// The DN bound as (empty: anonymous), and read.
        bind_dn: &'a str,
        /// The password (empty only with an empty `bind_dn`: such a bind is
        /// refused here, unsent).
        password: &'a str,
        /// The entry to read.
        dn: &'a str,
        /// Which attributes.
        attrs: &'a [&'a str],
    },
}

/// The directory's answer to an [`Op`].
#[derive(Debug)]
pub enum Answer {
    /// To a bind.
    Bind(LdapResult),
    /// To a search.
    Search(SearchResult),
    /// To a bind, and to the read if the bind succeeded.
    BindThenRead(LdapResult, Option<SearchResult>),
}

impl Answer {
    /// A bind's.
    pub fn bind(self) -> Result<LdapResult, Fault> {
        match self {
            Answer::Bind(r) => Ok(r),
            _ => Err(Fault("an answer of another operation".into())),
        }
    }

    /// A search's.
    pub fn search(self) -> Result<SearchResult, Fault> {
        match self {
            Answer::Search(r) => Ok(r),
            _ => Err(Fault("an answer of another operation".into())),
        }
    }

    /// A bind and read's.
    pub fn bind_then_read(self) -> Result<(LdapResult, Option<SearchResult>), Fault> {
        match self {
            Answer::BindThenRead(bind, read) => Ok((bind, read)),
            _ => Err(Fault("an answer of another operation".into())),
        }
    }
}

/// Connections of one identity.
pub struct Pool {
    what: &'static str,
    identity: Identity,
    max: usize,
    timeout: Duration,
    idle: Mutex<Vec<(Conn, Instant)>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("what", &self.what).field("idle", &self.idle.lock().len()).finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool named `what` (in logs) of at most `max` idle connections
    /// bound as `identity`, each operation bounded by `timeout`.
    pub fn new(what: &'static str, identity: Identity, max: usize, timeout: Duration) -> Self {
        Self { what, identity, max, timeout, idle: Mutex::new(Vec::new()) }
    }

    /// Runs `op` on an idle connection, or a new one; once more on a new
    /// one if a reused connection broke before answering.
    pub async fn run(&self, connector: &Connector, op: &Op<'_>) -> Result<Answer, Fault> {
        let conn = self.take(connector).await?;
        match self.attempt(conn, op).await {
            Err((fault, true)) => {
                tracing::debug!(pool = self.what, error = %fault.0, "a pooled LDAP connection was gone: once more on a new one");
            }
            other => return other.map_err(|(fault, _)| fault),
        }
        let conn = self.open(connector).await?;
        self.attempt(conn, op).await.map_err(|(fault, _)| fault)
    }

    /// The answer, or the fault and whether to try again on a new
    /// connection.
    async fn attempt(&self, mut conn: Conn, op: &Op<'_>) -> Result<Answer, (Fault, bool)> {
        match Guarded::new(exec(&mut conn.ldap, op, self.timeout)).await {
            Some(Ok(answer)) => {
                self.give_back(conn);
                Ok(answer)
            }
            Some(Err(e)) => Err((Fault(format!("{}: {e}", self.what)), conn.reused && broken(&e))),
            None => Err((Fault(format!("{}: {PANICKED}", self.what)), false)),
        }
    }

    /// An idle connection still open, or a new one.
    async fn take(&self, connector: &Connector) -> Result<Conn, Fault> {
        loop {
            let idle = self.idle.lock().pop();
            match idle {
                Some((mut conn, since)) if !conn.closed() && since.elapsed() < MAX_IDLE => {
                    conn.reused = true;
                    return Ok(conn);
                }
                Some(_) => continue,
                None => return self.open(connector).await,
            }
        }
    }

    /// A new connection, bound as the service account if the pool is its.
    async fn open(&self, connector: &Connector) -> Result<Conn, Fault> {
        let mut conn = connector.connect().await.map_err(Fault)?;
        if let Identity::Service { dn, password } = &self.identity {
            let bind = Guarded::new(conn.ldap.with_timeout(self.timeout).simple_bind(dn, password.expose())).await;
            match bind {
                Some(Ok(r)) if r.rc == 0 => {}
                Some(Ok(r)) => {
                    return Err(Fault(format!("the service account's bind was refused: {}", describe(&r))));
                }
                Some(Err(e)) => return Err(Fault(format!("the service account's bind: {e}"))),
                None => return Err(Fault(format!("the service account's bind: {PANICKED}"))),
            }
        }
        Ok(conn)
    }

    fn give_back(&self, conn: Conn) {
        let now = Instant::now();
        let mut idle = self.idle.lock();
        idle.retain(|(c, since)| !c.closed() && now.duration_since(*since) < MAX_IDLE);
        if idle.len() < self.max {
            idle.push((conn, now));
        }
    }

    /// Connections idle now (for tests and `Debug`).
    pub fn idle(&self) -> usize {
        self.idle.lock().len()
    }
}

const PANICKED: &str = "the directory sent what ldap3 cannot parse";

/// A result code and the directory's message, for a log.
pub fn describe(r: &LdapResult) -> String {
    let text = r.text.trim_end_matches('\0');
    if text.is_empty() {
        format!("result {}", r.rc)
    } else {
        format!("result {} ({text})", r.rc)
    }
}

/// The connection broke before the answer: closed, reset, or its driver
/// ended.
fn broken(e: &LdapError) -> bool {
    matches!(
        e,
        LdapError::OpSend { .. }
            | LdapError::ResultRecv { .. }
            | LdapError::IdScrubSend { .. }
            | LdapError::EndOfStream
            | LdapError::Io { .. }
    )
}

/// What a bind to a DN with an empty password gets here, without being
/// sent: RFC 4513 §5.1.2's "unauthenticated" bind, which AD and OpenLDAP
/// with `allow bind_anon_dn` accept as a success.
fn unauthenticated() -> LdapResult {
    let text = "ropc never sends a bind with a DN and an empty password".into();
    LdapResult { rc: 49, matched: String::new(), text, refs: vec![], ctrls: vec![] }
}

async fn exec(ldap: &mut Ldap, op: &Op<'_>, t: Duration) -> Result<Answer, LdapError> {
    match *op {
        Op::Bind { password: "", .. } => Ok(Answer::Bind(unauthenticated())),
        Op::BindThenRead { bind_dn, password: "", .. } if !bind_dn.is_empty() => {
            Ok(Answer::BindThenRead(unauthenticated(), None))
        }
        Op::Bind { dn, password } => Ok(Answer::Bind(ldap.with_timeout(t).simple_bind(dn, password).await?)),
        Op::Search { base, scope, filter, attrs } => {
            Ok(Answer::Search(search(ldap, base, scope, filter, attrs, t).await?))
        }
        Op::BindThenRead { bind_dn, password, dn, attrs } => {
            let bind = ldap.with_timeout(t).simple_bind(bind_dn, password).await?;
            if bind.rc != 0 {
                return Ok(Answer::BindThenRead(bind, None));
            }
            let read = search(ldap, dn, Scope::Base, "(objectClass=*)", attrs, t).await?;
            Ok(Answer::BindThenRead(bind, Some(read)))
        }
    }
}

/// A search bounded by `t` as a whole (ldap3's own timeout restarts at
/// each entry), of at most two entries (two tell an ambiguous filter).
async fn search(
    ldap: &mut Ldap,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &[&str],
    t: Duration,
) -> Result<SearchResult, LdapError> {
    let secs = i32::try_from(t.as_secs().max(1)).unwrap_or(i32::MAX);
    let options = SearchOptions::new().sizelimit(2).timelimit(secs);
    tokio::time::timeout(t, ldap.with_search_options(options).with_timeout(t).search(base, scope, filter, attrs))
        .await?
}

/// A future whose panic is its `None`.
struct Guarded<F>(Pin<Box<F>>);

impl<F: Future> Guarded<F> {
    fn new(future: F) -> Self {
        Self(Box::pin(future))
    }
}

impl<F: Future> Future for Guarded<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Some(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_an_answer_of_none() {
        assert_eq!(Guarded::new(async { 7 }).await, Some(7));
        let panics = Guarded::new(async {
            tokio::task::yield_now().await;
            if std::hint::black_box(true) {
                panic!("malformed");
            }
            7
        });
        assert_eq!(panics.await, None);
    }

    #[test]
    fn results_are_described_without_ads_nul() {
        let r = LdapResult {
            rc: 49,
            matched: String::new(),
            text: "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v2580\0".into(),
            refs: vec![],
            ctrls: vec![],
        };
        assert_eq!(
            describe(&r),
            "result 49 (80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v2580)"
        );
        assert_eq!(describe(&LdapResult { text: String::new(), ..r }), "result 49");
    }
}
