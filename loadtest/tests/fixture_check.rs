//! The fixture against the real `ropc` binary: `ropc config check` accepts
//! it, and the `ropc-loadtest run` command it prints works against
//! `ropc serve`. Cargo builds `ropc` for ropc-server's own tests (`cargo
//! build -p ropc-server` also does); when it is absent these tests say so
//! and pass.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const LOADTEST: &str = env!("CARGO_BIN_EXE_ropc-loadtest");

/// `target/debug/ropc`: beside this test binary's `deps/` folder, or under
/// the workspace's `target/`.
fn ropc_binary() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
            candidates.push(profile_dir.join("ropc"));
        }
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/ropc"));
    let found = candidates.iter().find(|p| p.is_file()).cloned();
    if found.is_none() {
        eprintln!("SKIPPED: no ropc binary at {candidates:?}; run `cargo build -p ropc-server` first");
    }
    found
}

fn fixture(dir: &Path, listen: &str) -> Output {
    let output = Command::new(LOADTEST)
        .args(["fixture", "--users", "20", "--m-cost", "64", "--t-cost", "1", "--p-cost", "1"])
        .args(["--listen", listen])
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    output
}

#[test]
fn ropc_config_check_accepts_the_fixture() {
    let Some(ropc) = ropc_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let output = fixture(dir.path(), "127.0.0.1:8443");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("client_secret"), "{stdout}");
    assert!(stdout.contains("ropc serve --config"), "{stdout}");
    assert!(stdout.contains("ropc-loadtest run --url http://127.0.0.1:8443/oauth/v2/oauth-token"));
    let check = Command::new(ropc).args(["config", "check"]).arg(dir.path().join("ropc.toml")).output().unwrap();
    assert!(
        check.status.success(),
        "ropc config check refused the fixture:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

/// Kills the server when the test ends, passed or not.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[test]
fn printed_command_runs_against_ropc_serve() {
    let Some(ropc) = ropc_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let output = fixture(dir.path(), &addr.to_string());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let command = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("ropc-loadtest run "))
        .expect("the fixture prints the run command")
        .to_owned();

    let mut server = Server(
        Command::new(ropc)
            .args(["serve", "--config"])
            .arg(dir.path().join("ropc.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "ropc did not start");
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("ropc exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    for scenario in ["password", "refresh", "client-credentials", "mixed", "introspect"] {
        let json = dir.path().join(format!("{scenario}.json"));
        // The printed command, word for word, bounded and with another scenario.
        let mut words = command.split_whitespace().skip(1);
        let mut args: Vec<String> = Vec::new();
        while let Some(word) = words.next() {
            if word == "--scenario" {
                words.next();
            } else {
                args.push(word.to_owned());
            }
        }
        let run = Command::new(LOADTEST)
            .args(&args)
            .args(["--scenario", scenario, "--connections", "2", "--requests", "40", "--quiet"])
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success(), "{scenario}: {out}{}", String::from_utf8_lossy(&run.stderr));
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(v["requests"], 40, "{scenario}: {out}");
        assert_eq!(v["successes"], 40, "{scenario}: {out}");
    }
}
