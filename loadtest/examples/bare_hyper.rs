//! The bare hyper baseline: the least a token endpoint can do on hyper 1.x.
//! HTTP/1.1 with keep-alive, the mimalloc allocator, and for every request:
//! read the form body, answer a fixed ~100-byte JSON token response. ropc's
//! throughput is compared against this server measured in the same run.
//!
//! ```sh
//! cargo run --release -p ropc-loadtest --example bare_hyper -- --listen 127.0.0.1:8080
//! ```

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::TcpListener;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The fixed answer: the shape of an RFC 6749 §5.1 token response.
const TOKEN_RESPONSE: &[u8] =
    br#"{"access_token":"uivMzF1fL5ES_DNZvDLVaZjs9QT4RoCqqqzvUx6K2js","token_type":"bearer","expires_in":300}"#;

async fn token(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let status = match Limited::new(request.into_body(), 8192).collect().await {
        Ok(body) => {
            std::hint::black_box(body.to_bytes());
            StatusCode::OK
        }
        Err(_) => StatusCode::BAD_REQUEST,
    };
    let mut response = Response::new(Full::new(Bytes::from_static(TOKEN_RESPONSE)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen = String::from("127.0.0.1:8080");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(addr)) => listen = addr,
            _ => return Err("usage: bare_hyper [--listen ADDR]".into()),
        }
    }
    // One worker per core this process may run on (taskset narrows it). On
    // one core, a current-thread runtime: a multi-thread one would add a
    // worker thread beside the accepting thread, taking turns on the core.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let runtime = if cores == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()?
    };
    runtime.block_on(async {
        let listener = TcpListener::bind(&listen).await?;
        println!("bare hyper listening on http://{}", listener.local_addr()?);
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(token)).await;
            });
        }
    })
}
