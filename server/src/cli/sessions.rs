//! `ropc sessions revoke`: asks the running server to end grants, through
//! its admin socket (a Unix socket beside the config, mode 0600) or, if
//! that is not served, its admin listener. Never the public listener.

use crate::config::Config;
use std::io::{Read, Write};
use std::time::Duration;

/// `ropc sessions revoke (--user NAME [--credential-manager M] | --client ID) --config FILE`.
pub fn revoke(
    user: Option<&str>,
    client: Option<&str>,
    manager: Option<&str>,
    file: &std::path::Path,
) -> Result<(), String> {
    let config = Config::load(file).map_err(|e| e.to_string())?;
    let mut pairs = Vec::new();
    match (user, client) {
        (Some(user), None) => {
            pairs.push(("user", user));
            if let Some(m) = manager {
                if !config.managers.contains_key(m) {
                    return Err(format!("{}: no [credential_managers.{m}] table", file.display()));
                }
                pairs.push(("credential_manager", m));
            }
        }
        (None, Some(client)) => {
            if config.engine.clients.find(client).is_none() {
                return Err(format!("{}: no client {client:?}", file.display()));
            }
            pairs.push(("client", client));
        }
        _ => return Err("give --user NAME or --client ID".into()),
    }
    let body = ropc_core::form::encode_pairs(&pairs);
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: ropc\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        crate::http::admin::SESSIONS_REVOKE,
        body.len()
    );
    let answer = send(&config, request.as_bytes())?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    if !head.starts_with("HTTP/1.1 200") {
        let status = head.lines().next().unwrap_or("no answer");
        return Err(format!("the server refused: {status}: {}", body.trim()));
    }
    let ended = body
        .split("\"grants_ended\":")
        .nth(1)
        .and_then(|rest| rest.trim_end_matches(['}', '\n', ' ']).trim().parse::<u64>().ok())
        .ok_or_else(|| format!("unexpected answer: {body}"))?;
    let whose = match (user, client) {
        (Some(u), _) => format!("user {u:?}"),
        (_, Some(c)) => format!("client {c:?}"),
        _ => String::new(),
    };
    println!("{ended} grants of {whose} ended");
    Ok(())
}

/// Sends `request` to the server's admin socket, or else its admin
/// listener; returns the whole answer.
fn send(config: &Config, request: &[u8]) -> Result<String, String> {
    let timeout = Some(Duration::from_secs(30));
    let mut answer = Vec::new();
    if let Some(path) = config.admin_socket.as_deref().filter(|p| p.exists()) {
        let mut stream = std::os::unix::net::UnixStream::connect(path)
            .map_err(|e| format!("cannot reach the server on {}: {e}", path.display()))?;
        stream.set_read_timeout(timeout).map_err(|e| e.to_string())?;
        stream.write_all(request).map_err(|e| e.to_string())?;
        stream.read_to_end(&mut answer).map_err(|e| format!("no answer from the server: {e}"))?;
        return Ok(String::from_utf8_lossy(&answer).into_owned());
    }
    let Some(addr) = &config.admin_listen else {
        let socket = config.admin_socket.as_ref().map_or("none".to_owned(), |p| p.display().to_string());
        return Err(format!(
            "the server is not running, or serves neither its admin socket ({socket}) nor an admin_listen"
        ));
    };
    use std::net::ToSocketAddrs;
    let target = addr.to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or("no address")?;
    let mut stream = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(5))
        .map_err(|e| format!("cannot reach the server on {addr}: {e}"))?;
    stream.set_read_timeout(timeout).map_err(|e| e.to_string())?;
    stream.write_all(request).map_err(|e| e.to_string())?;
    stream.read_to_end(&mut answer).map_err(|e| format!("no answer from the server: {e}"))?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}
