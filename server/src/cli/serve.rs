//! `ropc serve`: the runtime started on a config file, or on demo mode's.

use crate::config::Config;
use crate::demo;
use crate::logging::{self, LogFormat};
use crate::runtime::{reload_on_sighup, shutdown_signal, take_sighup, Server};
use std::path::{Path, PathBuf};

/// Runs the server until SIGTERM or SIGINT.
pub fn serve(config: Option<PathBuf>, log_format: LogFormat) -> Result<(), String> {
    let _log = logging::init(log_format);
    limit_transparent_huge_pages();
    let (path, demo) = match config {
        Some(path) => (path, None),
        None => {
            let d = demo::prepare(Path::new(demo::DEMO_DIR))?;
            (d.config.clone(), Some(d))
        }
    };
    let config = Config::load(&path).map_err(|e| e.to_string())?;
    for (name, manager) in &config.managers {
        // Debug of a manager's config redacts its passwords.
        tracing::debug!(manager = %name, config = ?manager, "credential manager");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ropc-async")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        #[cfg(unix)]
        let hup = take_sighup();
        let token_path = config.endpoints.token.clone();
        let server = Server::bind(config).await.map_err(|e| e.to_string())?;
        let issuer = server.app().live().issuer.clone();
        for addr in server.local_addrs() {
            println!("ropc listening on {}://{addr}", server.scheme());
        }
        for addr in server.admin_addrs() {
            println!("ropc admin (metrics, health) on http://{addr}");
        }
        if let Some(ca) = &server.ca_file {
            println!("self-signed certificate: {} (use with curl --cacert)", ca.display());
        }
        if let Some(d) = demo {
            print_demo(&d, server.ca_file.as_deref(), &format!("{issuer}{token_path}"));
        }
        #[cfg(unix)]
        if let Some(hup) = hup {
            tokio::spawn(reload_on_sighup(std::sync::Arc::clone(server.app()), hup));
        }
        tracing::info!(issuer = %issuer, "ready");
        server.run(shutdown_signal()).await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Keeps transparent huge pages off the heap that request threads touch
/// (Linux). The kernel zeroes a whole 2 MiB page inside the fault that
/// first touches it: measured on a 2-vCPU VM, a request thread stalled
/// about 6 ms per such fault while 2,048 fresh connections grew the heap,
/// and every request queued behind it waited as long (docs/operations.md,
/// "Huge pages"). mimalloc is built not to ask for huge pages (its `no_thp`
/// feature), which is enough where the kernel gives them only on request
/// (THP mode `madvise`); the hash workers' argon2 memory still asks for
/// them ([`ropc_hash::HashMemory`]). Where the kernel gives them to all
/// memory (mode `always`, the default of some distributions), they are
/// turned off for the process, as Redis does; on Linux 6.18 and later,
/// except for memory that asks (the argon2 memory keeps them), before
/// that for all of it (the hashes then run 1-2 % slower).
fn limit_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        use libc::c_ulong;
        /// `PR_THP_DISABLE_EXCEPT_ADVISED` (Linux 6.18): madvised ranges
        /// keep their huge pages.
        const EXCEPT_ADVISED: c_ulong = 1 << 1;
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
        if !mode.contains("[always]") {
            return;
        }
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments and only sets
        // a flag on this process's memory map.
        let set = |flags: c_ulong| unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1 as c_ulong, flags, 0 as c_ulong, 0 as c_ulong)
        };
        if set(EXCEPT_ADVISED) == 0 {
            tracing::info!("transparent huge pages are set to `always` on this host: turned off for ropc except its hash memory, so that no request waits while a page fault zeroes 2 MiB");
        } else if set(0) == 0 {
            tracing::info!("transparent huge pages are set to `always` on this host: turned off for ropc (this kernel cannot keep them for the hash memory alone; hashes run 1-2 % slower), so that no request waits while a page fault zeroes 2 MiB");
        } else {
            let error = std::io::Error::last_os_error();
            tracing::warn!(%error, "transparent huge pages are set to `always` and cannot be turned off for ropc: expect ms-long stalls while the heap grows (set them to `madvise`)");
        }
    }
}

fn print_demo(d: &demo::Demo, ca: Option<&Path>, url: &str) {
    let cacert = ca.map(|p| format!("--cacert {} ", p.display())).unwrap_or_default();
    println!(
        "\nropc demo mode: configuration in {config} (delete {dir}/ to start over)\n\
         \n  client_id      legacy\n  client_secret  {secret}\n  username       demo\n  password       {password}\n\
         \nGet a token (Resource Owner Password Credentials, RFC 6749 section 4.3):\n\
         \n  curl {cacert}-X POST {url} \\\n    -H 'Content-Type: application/x-www-form-urlencoded' \\\n    \
         -d 'grant_type=password&client_id=legacy&client_secret={secret}&username=demo&password={password}&scope=read'\n",
        config = d.config.display(),
        dir = demo::DEMO_DIR,
        secret = d.client_secret,
        password = d.password,
    );
}
