//! Atomic file replacement: write a temporary file beside the target, fsync
//! it, rename it over the target, fsync the directory. A reader sees the old
//! file or the new one, never half of either.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
#[cfg(unix)]
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Replaces `path` with `contents` atomically. A new file gets `mode`; an
/// existing file keeps its permissions.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    // A random suffix, not only the pid: in a container the server is
    // always pid 1, and a temp file left by a crash must not block every
    // later write.
    let mut suffix = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix)
        .map_err(|_| io::Error::other("the system random source failed"))?;
    let tmp =
        dir.join(format!(".{}.tmp{}-{:016x}", name.to_string_lossy(), std::process::id(), u64::from_le_bytes(suffix)));
    #[cfg(unix)]
    let mode = fs::metadata(path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(mode);
    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(mode);
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    #[cfg(not(unix))]
    let _ = mode;
    result
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
