//! Reading a form body within its limits: `max_body_bytes`, and the
//! header read timeout. The buffer is zeroed when dropped: it holds
//! passwords.
//!
//! A body over the limit is answered `413`, and the connection closed. Its
//! rest is read and thrown away first, up to [`DRAIN_BYTES`] and for at
//! most [`DRAIN_TIME`] (nginx's lingering close): a client writes its
//! whole body before it reads the answer (Python's http.client, curl), and
//! a socket closed with bytes unread is reset, which throws away the
//! answer before the client reads it. A client that asked `Expect:
//! 100-continue` has sent no body yet: it gets the `413` at once.

use http::header::{CONTENT_LENGTH, EXPECT};
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::time::Duration;
use zeroize::Zeroizing;

/// The most of an oversized body read and thrown away before the `413`.
pub const DRAIN_BYTES: u64 = 4 << 20;

/// The longest an oversized body is read before the `413` goes out anyway.
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Why a body was not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Over the limit (answered `413`).
    TooLarge,
    /// Cut short, malformed or too slow (answered `400`).
    Unreadable,
}

/// Reads the body, refusing it once it passes `limit` and giving up after
/// `timeout`.
pub async fn read(
    headers: &HeaderMap,
    mut body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Zeroizing<Vec<u8>>, BodyError> {
    let declared = match headers.get(CONTENT_LENGTH) {
        Some(len) => Some(len.to_str().ok().and_then(|s| s.parse::<u64>().ok()).ok_or(BodyError::Unreadable)?),
        None => None,
    };
    if declared.is_some_and(|len| len > limit as u64) {
        let waits_for_continue =
            headers.get(EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !waits_for_continue && declared.is_some_and(|len| len <= DRAIN_BYTES) {
            drain(body, 0).await;
        }
        return Err(BodyError::TooLarge);
    }
    let mut out = Zeroizing::new(Vec::with_capacity(256));
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Unreadable)?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > limit {
                    return Err(BodyError::TooLarge);
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(())) => Ok(out),
        Ok(Err(BodyError::TooLarge)) => {
            // A chunked body that grew past the limit: what it sent so far
            // is gone, its rest is drained.
            let seen = out.len() as u64;
            out.clear();
            drop(out);
            drain(body, seen).await;
            Err(BodyError::TooLarge)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(BodyError::Unreadable),
    }
}

/// Reads and drops the rest of `body` (`seen` bytes of it were read
/// already), up to [`DRAIN_BYTES`] in all and for [`DRAIN_TIME`].
async fn drain(mut body: Incoming, seen: u64) {
    let discard = async {
        let mut total = seen;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                total += data.len() as u64;
                if total > DRAIN_BYTES {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}
