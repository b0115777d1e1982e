//! Private database servers for the SQL credential manager's tests: a
//! PostgreSQL and a MariaDB of the test's own, each in a temp dir on a free
//! loopback port, with a database `legacy` and a user `ropc` with a
//! password; and a SQLite file. `stop` and `start` (same port, same data)
//! make outages; drop stops them (killed if need be).
//!
//! A missing server fails the test with the Debian package to install: the
//! tests are never skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `ropc` user's password: characters a URL must percent-encode, so
/// that the redaction of the decoded form is tested too.
pub const PASSWORD: &str = "s3cr:t@db/pw";
/// [`PASSWORD`] as a URL's user info writes it.
pub const PASSWORD_IN_URL: &str = "s3cr%3At%40db%2Fpw";
/// The superuser's (PostgreSQL's `postgres`, MariaDB's `root` has none and
/// is reached over the socket only).
const ADMIN_PASSWORD: &str = "admin-pw-9d1c";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            panic!("{what} did not listen on 127.0.0.1:{port} within 30 s; its log:\n{}", read(log));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()))
}

fn check(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// PostgreSQL's programs: the newest /usr/lib/postgresql/N/bin.
fn pg_bin(program: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path().join("bin"))).collect())
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    match versions.into_iter().rev().map(|b| b.join(program)).find(|p| p.is_file()) {
        Some(path) => path,
        None => panic!(
            "PostgreSQL's {program} is not installed (looked in /usr/lib/postgresql/*/bin): the SQL tests need \
             it (Debian: apt-get install postgresql; no service needs to run)"
        ),
    }
}

/// A PostgreSQL cluster of the test's own, stopped on drop.
pub struct Postgres {
    pub port: u16,
    /// The cluster's files (also its socket's directory).
    data: PathBuf,
    running: bool,
    _dir: tempfile::TempDir,
    _cpu: Option<super::Shared>,
}

impl Postgres {
    /// `initdb` (scram-sha-256), start, and create `ropc` and `legacy`.
    pub fn start() -> Postgres {
        Self::start_with(Some(super::shared()))
    }

    /// The same, for a test that holds [`super::exclusive`] already.
    pub fn start_unshared() -> Postgres {
        Self::start_with(None)
    }

    fn start_with(cpu: Option<super::Shared>) -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{ADMIN_PASSWORD}\n")).unwrap();
        if is_root() {
            // The cluster belongs to `postgres` (PostgreSQL refuses root):
            // the temp dir must be traversable, its files its own.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
            for path in [&data, &pwfile] {
                check(Command::new("chown").arg("postgres").arg(path).output().unwrap(), "chown postgres");
            }
        }
        let mut initdb = Self::command("initdb");
        initdb.arg("-D").arg(&data).args(["-A", "scram-sha-256", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
        check(initdb.arg(format!("--pwfile={}", pwfile.display())).output().unwrap(), "initdb");
        let mut pg = Postgres { port: free_port(), data, running: false, _dir: dir, _cpu: cpu };
        pg.start_again();
        pg.admin(&format!("CREATE ROLE ropc LOGIN PASSWORD '{PASSWORD}'"));
        pg.admin("CREATE DATABASE legacy OWNER ropc ENCODING 'UTF8'");
        pg
    }

    /// A program of PostgreSQL's, run as `postgres` when the tests are root.
    fn command(program: &str) -> Command {
        let path = pg_bin(program);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// The URL ropc is configured with.
    pub fn url(&self) -> String {
        format!("postgres://ropc:{PASSWORD_IN_URL}@127.0.0.1:{}/legacy?sslmode=disable", self.port)
    }

    /// Starts it (again: the same port and data) and waits until it listens.
    pub fn start_again(&mut self) {
        let log = self.data.join("server.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            self.data.display()
        );
        let mut c = Self::command("pg_ctl");
        c.arg("-D").arg(&self.data).arg("-l").arg(&log).args(["-w", "-t", "30", "-o", &options, "start"]);
        check(c.stdout(Stdio::null()).output().unwrap(), "pg_ctl start");
        self.running = true;
        wait_for_port(self.port, "PostgreSQL", &log);
    }

    /// Stops it (`-m fast`: sessions are ended, not waited for).
    pub fn stop(&mut self) {
        self.stop_with("fast");
    }

    fn stop_with(&mut self, mode: &str) {
        if !self.running {
            return;
        }
        let mut c = Self::command("pg_ctl");
        c.arg("-D").arg(&self.data).args(["-w", "-t", "30", "-m", mode, "stop"]).stdout(Stdio::null());
        let stopped = c.output().is_ok_and(|o| o.status.success());
        if !stopped {
            // Kill the postmaster named by its pid file.
            let pid = std::fs::read_to_string(self.data.join("postmaster.pid")).unwrap_or_default();
            if let Some(pid) = pid.lines().next().and_then(|p| p.trim().parse::<i32>().ok()) {
                // SAFETY: sending a signal has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        self.running = false;
    }

    fn psql(&self, user: &str, password: &str, db: &str, sql: &str) -> Command {
        let mut c = Command::new(pg_bin("psql"));
        c.env("PGPASSWORD", password).arg("-h").arg(&self.data).args(["-p", &self.port.to_string(), "-U", user]);
        c.args(["-d", db, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        c
    }

    fn admin(&self, sql: &str) -> String {
        check(self.psql("postgres", ADMIN_PASSWORD, "postgres", sql).output().unwrap(), "psql (admin)")
    }

    /// Runs `sql` as `ropc` in `legacy` (psql over the socket); its output,
    /// unaligned, one row a line, `|` between columns.
    pub fn sql(&self, sql: &str) -> String {
        check(self.psql("ropc", PASSWORD, "legacy", sql).output().unwrap(), "psql").trim().to_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_with("immediate");
    }
}

/// A MariaDB server of the test's own, stopped on drop.
pub struct Mariadb {
    pub port: u16,
    data: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
    _cpu: super::Shared,
}

fn mariadb_program(program: &str) -> Command {
    let found = ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"]
        .iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file());
    match found {
        Some(path) => Command::new(path),
        None => panic!(
            "MariaDB's {program} is not installed: the SQL tests need it (Debian: apt-get install mariadb-server; \
             no service needs to run)"
        ),
    }
}

impl Mariadb {
    /// `mariadb-install-db`, start, and create `ropc` and `legacy`.
    pub fn start() -> Mariadb {
        let cpu = super::shared();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // A temp dir of its own: a starting mariadbd deletes the `#sql*`
        // files in its tmpdir, another test's bootstrap's among them.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let mut install = mariadb_program("mariadb-install-db");
        install.arg("--no-defaults").arg(format!("--datadir={}", data.display()));
        install.arg(format!("--tmpdir={}", tmp.display()));
        if is_root() {
            install.arg("--user=root");
        }
        install.args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        check(install.output().unwrap(), "mariadb-install-db");
        let mut db = Mariadb { port: free_port(), data, child: None, _dir: dir, _cpu: cpu };
        db.start_again();
        db.root(&format!(
            "CREATE DATABASE legacy CHARACTER SET utf8mb4; CREATE USER 'ropc'@'%' IDENTIFIED BY '{PASSWORD}'; \
             GRANT ALL ON legacy.* TO 'ropc'@'%';"
        ));
        db
    }

    fn socket(&self) -> PathBuf {
        self.data.join("sock")
    }

    /// The URL ropc is configured with.
    pub fn url(&self) -> String {
        format!("mysql://ropc:{PASSWORD_IN_URL}@127.0.0.1:{}/legacy?ssl-mode=disabled", self.port)
    }

    /// Starts it (again: the same port and data) and waits until it listens.
    pub fn start_again(&mut self) {
        let log = self.data.join("error.log");
        let mut c = mariadb_program("mariadbd");
        c.arg("--no-defaults").arg(format!("--datadir={}", self.data.display()));
        c.arg(format!("--tmpdir={}", self.data.with_file_name("tmp").display()));
        c.arg(format!("--socket={}", self.socket().display())).arg(format!("--port={}", self.port));
        c.arg(format!("--log-error={}", log.display())).arg(format!("--pid-file={}", self.data.join("pid").display()));
        c.args(["--bind-address=127.0.0.1", "--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=16M"]);
        if is_root() {
            c.arg("--user=root");
        }
        let child = c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("mariadbd");
        self.child = Some(child);
        wait_for_port(self.port, "MariaDB", &log);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.socket().exists() {
            assert!(Instant::now() < deadline, "MariaDB made no socket; its log:\n{}", read(&log));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it (SIGTERM: a clean shutdown; SIGKILL after 30 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // SAFETY: sending a signal has no memory-safety preconditions.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn client(&self, user: &str, db: &str, sql: &str) -> String {
        let mut c = mariadb_program("mariadb");
        c.arg("--no-defaults").arg(format!("--socket={}", self.socket().display()));
        c.args(["-u", user, "-N", "-B", db, "-e", sql]);
        check(c.output().unwrap(), "mariadb")
    }

    fn root(&self, sql: &str) -> String {
        self.client("root", "mysql", sql)
    }

    /// Runs `sql` in `legacy` (the `mariadb` client over the socket, as
    /// root); its output, one row a line, tabs between columns.
    pub fn sql(&self, sql: &str) -> String {
        self.client("root", "legacy", sql).trim().to_owned()
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A SQLite database file in a temp dir; its SQL runs through sqlx.
pub struct Sqlite {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sqlite {
    /// An empty database file.
    pub fn new() -> Sqlite {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.db");
        std::fs::write(&path, b"").unwrap();
        Sqlite { path, _dir: dir }
    }

    /// The URL as the config arrives resolved: `sqlite:///abs/path`.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    async fn connection(&self) -> sqlx::SqliteConnection {
        use sqlx::Connection;
        sqlx::SqliteConnection::connect(&self.url()).await.expect("open the SQLite file")
    }

    /// Runs `sql` (several statements may be given).
    pub async fn exec(&self, sql: &str) {
        let mut conn = self.connection().await;
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The first column of the first row of `sql`, as text.
    pub async fn text(&self, sql: &str) -> String {
        let mut conn = self.connection().await;
        sqlx::query_scalar::<_, String>(sql).fetch_one(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}
