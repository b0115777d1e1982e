//! Changing the users file on disk, safely against crashes and against
//! other writers:
//!
//! - every change holds an exclusive `flock` on `<users file>.lock` (a
//!   separate file, because the users file itself is replaced by a rename),
//!   re-reads the file under it and writes the result with
//!   [`write_atomic`] (temp file, fsync, rename, directory fsync): a crash
//!   leaves the old file or the new one, never half of one;
//! - `ropc user add` and the server's upgrades on login both go through
//!   [`update`], so neither loses the other's lines;
//! - the server's upgrades are written by one thread per file
//!   ([`spawn_writer`]), in batches, off the request threads.

use crate::fsutil::write_atomic;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil::lock_path;
pub use crate::fsutil::FileLock;

/// Waits for the exclusive lock on `path`'s lock file (see
/// [`crate::fsutil::lock`]).
pub fn lock(path: &Path) -> io::Result<FileLock> {
    crate::fsutil::lock(path, true)
}

/// Why a users file was not changed.
#[derive(Debug)]
pub enum EditError {
    /// Its lock file could not be taken.
    Lock(PathBuf, io::Error),
    /// It could not be read.
    Read(PathBuf, io::Error),
    /// The result would not be a valid users file: why.
    Invalid(String),
    /// It could not be written.
    Write(PathBuf, io::Error),
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::Lock(path, e) => write!(f, "cannot lock {}: {e}", lock_path(path).display()),
            EditError::Read(path, e) => write!(f, "cannot read {}: {e}", path.display()),
            EditError::Invalid(why) => f.write_str(why),
            EditError::Write(path, e) => write!(f, "cannot write {}: {e}", path.display()),
        }
    }
}

impl std::error::Error for EditError {}

/// Under the lock, reads `path` (empty if missing), lets `edit` change its
/// lines, checks the result with `validate`, and writes it atomically if
/// `edit` returned true. Returns whether it wrote.
pub fn update(
    path: &Path,
    edit: impl FnOnce(&mut Vec<String>) -> bool,
    validate: impl FnOnce(&str) -> Result<(), String>,
) -> Result<bool, EditError> {
    let _lock = lock(path).map_err(|e| EditError::Lock(path.to_owned(), e))?;
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(EditError::Read(path.to_owned(), e)),
    };
    let mut lines: Vec<String> = existing.lines().map(str::to_owned).collect();
    if !edit(&mut lines) {
        return Ok(false);
    }
    let mut text = lines.join("\n");
    text.push('\n');
    validate(&text).map_err(EditError::Invalid)?;
    write_atomic(path, text.as_bytes(), 0o600).map_err(|e| EditError::Write(path.to_owned(), e))?;
    Ok(true)
}

/// The username of a users-file line, unless it is a comment or blank.
pub fn line_user(line: &str) -> Option<&str> {
    if line.trim().is_empty() || line.trim_start().starts_with('#') {
        return None;
    }
    line.split_once(':').map(|(name, _)| name)
}

/// A hash to replace: `user`'s line is changed to `new` only if its hash is
/// still `old` (so a hash set meanwhile by `ropc user add` wins).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replacement {
    /// The username.
    pub user: String,
    /// The hash the change was computed against.
    pub old: String,
    /// The new hash.
    pub new: String,
}

/// Applies `changes` in one locked, atomic rewrite; returns how many were
/// applied (the others' lines had changed or gone).
pub fn replace_hashes(path: &Path, changes: &[Replacement]) -> Result<usize, EditError> {
    let mut applied = 0;
    update(
        path,
        |lines| {
            for line in lines.iter_mut() {
                let Some(user) = line_user(line) else { continue };
                let hash = line[user.len() + 1..].trim();
                if let Some(c) = changes.iter().find(|c| c.user == user && c.old == hash) {
                    *line = format!("{}:{}", c.user, c.new);
                    applied += 1;
                }
            }
            applied > 0
        },
        |_| Ok(()),
    )?;
    Ok(applied)
}

/// Starts the thread that writes upgraded hashes to the users file at
/// `path`: it takes what is queued, applies it in one locked atomic
/// rewrite, and waits for more. Ends when every sender is dropped.
pub fn spawn_writer(path: PathBuf) -> io::Result<crossbeam_channel::Sender<Replacement>> {
    let (tx, rx) = crossbeam_channel::bounded::<Replacement>(4096);
    std::thread::Builder::new().name("ropc-users-file".into()).spawn(move || {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter().take(4095));
            match replace_hashes(&path, &batch) {
                Ok(n) => tracing::info!(written = n, queued = batch.len(), "users file updated with upgraded hashes"),
                Err(e) => tracing::error!(error = %e, "cannot write upgraded hashes to the users file"),
            }
        }
    })?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn concurrent_writers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = Arc::new(dir.path().join("users.htpasswd"));
        std::fs::write(&*path, "# users\nkeep:$old$\n").unwrap();
        // Eight writers add 25 users each, at the same time, plus one that
        // keeps replacing `keep`'s hash: every line must survive.
        let threads: Vec<_> = (0..9)
            .map(|t| {
                let path = Arc::clone(&path);
                std::thread::spawn(move || {
                    for i in 0..25 {
                        if t == 8 {
                            let old = if i == 0 { "$old$".to_owned() } else { format!("$v{}$", i - 1) };
                            let c = Replacement { user: "keep".into(), old, new: format!("$v{i}$") };
                            assert_eq!(replace_hashes(&path, &[c]).unwrap(), 1);
                        } else {
                            let wrote = update(
                                &path,
                                |lines| {
                                    lines.push(format!("u{t}-{i}:$h$"));
                                    true
                                },
                                |_| Ok(()),
                            );
                            assert!(wrote.unwrap());
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(&*path).unwrap();
        let users: Vec<&str> = text.lines().filter_map(line_user).collect();
        assert_eq!(users.len(), 1 + 8 * 25, "{text}");
        assert!(text.starts_with("# users\n"), "comments are kept");
        assert!(text.contains("keep:$v24$\n"));
        // A replacement computed against a hash that changed since is skipped.
        let stale = Replacement { user: "keep".into(), old: "$old$".into(), new: "$lost$".into() };
        assert_eq!(replace_hashes(&path, &[stale]).unwrap(), 0);
        assert!(std::fs::read_to_string(&*path).unwrap().contains("keep:$v24$\n"));
    }
}
