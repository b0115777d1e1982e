//! `ropc config reload`: validates a config file, then has the running
//! server commit it (SIGHUP; the server's side is in
//! [`crate::runtime`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `ropc config reload`: validates `file` (and its users file) here, then
/// sends `SIGHUP` to the `ropc serve` processes running it (or to `pid`).
/// With `[server] admin_listen` set, waits for the server's verdict on
/// `/metrics`.
pub fn config_reload(file: &Path, pid: Option<u32>) -> Result<(), String> {
    super::check::config_check(file)?;
    let pids = match pid {
        Some(p) => {
            // SIGHUP ends most other programs: only signal a `ropc serve`.
            let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if std::path::Path::new("/proc/self").exists() && serve_config_arg(&args).is_none() {
                return Err(format!("process {p} is not a `ropc serve`"));
            }
            vec![p]
        }
        None => find_servers(file)?,
    };
    if pids.is_empty() {
        return Err(format!(
            "no running `ropc serve --config {}` found (give its process id with --pid)",
            file.display()
        ));
    }
    let config = crate::config::Config::load(file).map_err(|e| e.to_string())?;
    let admin = config.admin_listen.clone();
    let before = admin.as_deref().and_then(|a| reload_counters(a).ok());
    for p in &pids {
        send_hup(*p)?;
        println!("sent SIGHUP to ropc process {p}");
    }
    let (Some(addr), Some(before)) = (admin, before) else {
        println!("the server logs the outcome: event config_commit, or config_rejected with the reason");
        return Ok(());
    };
    // One server answers on admin_listen; wait for its verdict.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let Ok(now) = reload_counters(&addr) else { continue };
        if now.0 > before.0 {
            println!("committed: configuration generation {}", now.0);
            return Ok(());
        }
        if now.1 > before.1 {
            return Err("the server refused the configuration; see its log (event config_rejected)".into());
        }
    }
    Err("no verdict from the server within 30 s; see its log".into())
}

#[cfg(unix)]
fn send_hup(pid: u32) -> Result<(), String> {
    let target = libc::pid_t::try_from(pid).map_err(|_| format!("bad process id {pid}"))?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(target, libc::SIGHUP) } != 0 {
        return Err(format!("cannot signal process {pid}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(not(unix))]
fn send_hup(_: u32) -> Result<(), String> {
    Err("config reload by signal needs a Unix system".into())
}

/// The processes whose command line is `ropc serve --config F` with `F`
/// the same file as `file` (through `/proc`, Linux).
fn find_servers(file: &Path) -> Result<Vec<u32>, String> {
    let wanted = std::fs::canonicalize(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Err("cannot list processes (no /proc); give the server's process id with --pid".into());
    };
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let Some(config) = serve_config_arg(&args) else { continue };
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else { continue };
        if std::fs::canonicalize(cwd.join(config)).is_ok_and(|c| c == wanted) {
            found.push(pid);
        }
    }
    Ok(found)
}

/// The config file of a `ropc … serve [--config F]` command line (demo
/// mode's without `--config`).
fn serve_config_arg(args: &[&[u8]]) -> Option<PathBuf> {
    let program = Path::new(std::str::from_utf8(args.first()?).ok()?).file_name()?.to_str()?;
    if program != "ropc" {
        return None;
    }
    let args: Vec<&str> = args.iter().filter_map(|a| std::str::from_utf8(a).ok()).collect();
    if !args.contains(&"serve") {
        return None;
    }
    let config = args.iter().enumerate().find_map(|(i, a)| match a.strip_prefix("--config") {
        Some("") => args.get(i + 1).map(PathBuf::from),
        Some(rest) => rest.strip_prefix('=').map(PathBuf::from),
        None => None,
    });
    // Demo mode serves the config it keeps in its directory.
    Some(config.unwrap_or_else(|| Path::new(crate::demo::DEMO_DIR).join("ropc.toml")))
}

/// `ropc_config_generation` and `ropc_config_reload_failures_total` from the
/// admin listener's `/metrics` (plain HTTP).
fn reload_counters(addr: &str) -> Result<(u64, u64), String> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let target = addr.to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or("no address")?;
    let mut stream =
        std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream.take(1 << 20).read_to_string(&mut text).map_err(|e| e.to_string())?;
    let value =
        |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<u64>().ok());
    match (value("ropc_config_generation"), value("ropc_config_reload_failures_total")) {
        (Some(g), Some(f)) => Ok((g, f)),
        _ => Err("no reload counters in /metrics".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_config_of_a_serve_command_line() {
        let parse = |line: &str| serve_config_arg(&line.split(' ').map(str::as_bytes).collect::<Vec<_>>());
        assert_eq!(parse("/usr/bin/ropc serve --config a.toml"), Some(PathBuf::from("a.toml")));
        assert_eq!(
            parse("ropc --log-format json serve --config=/etc/ropc.toml"),
            Some(PathBuf::from("/etc/ropc.toml"))
        );
        assert_eq!(parse("ropc serve"), Some(PathBuf::from("ropc-demo/ropc.toml")));
        assert_eq!(parse("ropc config check --config a.toml"), None);
        assert_eq!(parse("vim serve --config a.toml"), None);
    }
}
