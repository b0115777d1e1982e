//! Atomic file replacement: write a temporary file beside the target, fsync
//! it, rename it over the target, fsync the directory. A reader sees the old
//! file or the new one, never half of either.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
#[cfg(unix)]
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Replaces `path` with `contents` atomically. A new file gets `mode`; an
/// existing file keeps its permissions.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut staged = Staged::new(path, mode)?;
    staged.file().write_all(contents)?;
    staged.commit().map(drop)
}

/// A replacement for a file, written beside it under a temporary name and
/// put in its place by [`Staged::commit`]; removed if dropped uncommitted.
/// The file is open for appending, and stays usable after the commit (the
/// descriptor then belongs to the file at `path`).
#[derive(Debug)]
pub struct Staged {
    file: File,
    tmp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    committed: bool,
}

impl Staged {
    /// Creates the temporary file beside `path`, with `path`'s permissions
    /// if it exists, else `mode`.
    pub fn new(path: &Path, mode: u32) -> io::Result<Staged> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
        // A random suffix, not only the pid: in a container the server is
        // always pid 1, and a temp file left by a crash must not block every
        // later write.
        let mut suffix = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix)
            .map_err(|_| io::Error::other("the system random source failed"))?;
        let tmp = dir.join(format!(
            ".{}.tmp{}-{:016x}",
            name.to_string_lossy(),
            std::process::id(),
            u64::from_le_bytes(suffix)
        ));
        #[cfg(unix)]
        let mode = fs::metadata(path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(mode);
        let mut options = OpenOptions::new();
        options.append(true).create_new(true);
        #[cfg(unix)]
        options.mode(mode);
        #[cfg(not(unix))]
        let _ = mode;
        let file = options.open(&tmp)?;
        Ok(Staged { file, tmp, path: path.to_owned(), dir, committed: false })
    }

    /// The temporary file, to write to.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Syncs the file, renames it over the target and syncs the directory
    /// (best effort: see [`sync_dir`]); returns the file, now the target.
    pub fn commit(mut self) -> io::Result<File> {
        self.file.sync_all()?;
        let file = self.install()?;
        let _ = sync_dir(&self.dir);
        Ok(file)
    }

    /// Renames the file over the target as it is, with no sync: the caller
    /// has synced what must survive a power cut, and syncs the directory
    /// ([`sync_dir`]) to make the rename itself durable. Returns the file,
    /// now the target. Once it succeeded, dropping `self` leaves the file.
    pub fn install(&mut self) -> io::Result<File> {
        let file = self.file.try_clone()?;
        fs::rename(&self.tmp, &self.path)?;
        self.committed = true;
        Ok(file)
    }

    /// The directory the file is renamed in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Syncs a directory, making the renames in it durable. A filesystem that
/// cannot sync a directory (`EINVAL`) counts as done: there is nothing
/// more to do there, and the rename stands.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if e.kind() == io::ErrorKind::InvalidInput || e.kind() == io::ErrorKind::Unsupported => Ok(()),
        other => other,
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// An exclusive `flock` on a file's lock file, released when dropped.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

/// `<path>.lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    path.with_file_name(name)
}

/// The exclusive lock on `path`'s lock file (created if missing, never
/// deleted: removing it would let two holders lock different files).
/// With `wait`, waits for it; without, fails with `WouldBlock` if held.
#[cfg(unix)]
pub fn lock(path: &Path, wait: bool) -> io::Result<FileLock> {
    use std::os::unix::io::AsRawFd;
    // flock needs only a readable descriptor: open read-only, so that a
    // lock file created by another user (`sudo ropc user add`) still works;
    // create it world-readable (it holds nothing) when missing.
    let lock = lock_path(path);
    let file = match File::open(&lock) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            OpenOptions::new().create(true).truncate(false).write(true).mode(0o644).open(&lock)?
        }
        Err(e) => return Err(e),
    };
    let op = if wait { libc::LOCK_EX } else { libc::LOCK_EX | libc::LOCK_NB };
    loop {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(FileLock { _file: file });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_keeps_mode() {
        let dir = std::env::temp_dir().join(format!("ropc-fsutil-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.txt");
        write_atomic(&path, b"one", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        #[cfg(unix)]
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        write_atomic(&path, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let leftovers = fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// What a reader sees at any instant is what a crash (`kill -9`, power
    /// loss after the fsyncs) at that instant would leave: it must always be
    /// one whole version. (A `truncate` + `write` rewrite fails this at
    /// once: readers catch the file empty or half written.)
    #[test]
    fn readers_only_ever_see_a_whole_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.htpasswd");
        let versions: Vec<Vec<u8>> = (0..2u8).map(|v| vec![b'a' + v; 1 << 20]).collect();
        write_atomic(&path, &versions[0], 0o600).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut reads = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let seen = fs::read(&path).unwrap();
                    assert!(versions.contains(&seen), "a partial file of {} bytes", seen.len());
                    reads += 1;
                }
                reads
            });
            for i in 0..100 {
                write_atomic(&path, &versions[i % 2], 0o600).unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(reader.join().unwrap() > 10, "the reader barely ran: the test proved nothing");
        });
    }
}
