//! Where a value came from, and errors that say so: `file:line: key:
//! problem`. The config file, the users file and every file they name are
//! read through here, so that each error points at what to fix.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A problem with a value read from a file: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    /// The file.
    pub file: PathBuf,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// The key, as a dotted path (`clients.scopes`); empty when the
    /// problem is the whole file or a line without keys.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl SourceError {
    /// A problem with the file as a whole.
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        Self { file: file.to_owned(), line: None, key: String::new(), message: message.into() }
    }

    /// A problem on one line of `file`, outside any key.
    pub fn line(file: &Path, line: usize, message: impl Into<String>) -> Self {
        Self { file: file.to_owned(), line: Some(line), key: String::new(), message: message.into() }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": `{}`: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for SourceError {}

/// The text of `path`; an error says `what` went wrong and names the file.
pub fn read_file(path: &Path, what: &str) -> Result<String, SourceError> {
    std::fs::read_to_string(path).map_err(|e| SourceError::file(path, format!("{what}: {e}")))
}

/// Builds errors for one source text, from the byte spans serde keeps.
#[derive(Clone, Copy, Debug)]
pub struct Locator<'s> {
    /// The file the text came from.
    pub file: &'s Path,
    /// The text.
    pub source: &'s str,
}

impl Locator<'_> {
    /// The 1-based line of byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        self.source.as_bytes()[..offset.min(self.source.len())].iter().filter(|&&b| b == b'\n').count() + 1
    }

    /// An error at `span` (an empty span at 0, a default's, has no line).
    pub fn at(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> SourceError {
        let line = (span != (0..0)).then(|| self.line_of(span.start));
        SourceError { file: self.file.to_owned(), line, key: key.into(), message: message.into() }
    }

    /// The dotted key at `offset`: the enclosing table header plus the key
    /// on that line, for errors serde reports with only a span.
    pub fn key_at(&self, offset: usize) -> String {
        let offset = offset.min(self.source.len());
        let line_start = self.source[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.source[offset..].find('\n').map_or(self.source.len(), |i| offset + i);
        let line = self.source[line_start..line_end].trim();
        let header = |l: &str| l.trim_start_matches('[').split(']').next().unwrap_or("").trim().to_owned();
        if line.starts_with('[') {
            return header(line);
        }
        let key = line.split('=').next().unwrap_or("").trim().trim_matches('"');
        let table = self.source[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(header)
            .unwrap_or_default();
        match (table.is_empty(), key.is_empty()) {
            (true, _) => key.to_owned(),
            (false, true) => table,
            (false, false) => format!("{table}.{key}"),
        }
    }
}
