//! Diagnostics: every problem found in a user's file, with `path:line:col`,
//! collected so `check` can report all of them at once.

use std::fmt;
use std::path::{Path, PathBuf};

/// A position inside a file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    pub const fn new(line: usize, col: usize) -> Self {
        Self { line, col }
    }
}

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub pos: Pos,
    pub message: String,
}

impl Diagnostic {
    pub fn new(path: impl Into<PathBuf>, pos: Pos, message: impl Into<String>) -> Self {
        Self { path: path.into(), pos, message: message.into() }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.path.display(), self.pos.line, self.pos.col, self.message)
    }
}

/// Problems gathered while reading one or more files.
#[derive(Debug, Default, Clone, thiserror::Error)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, path: &Path, pos: Pos, message: impl Into<String>) {
        self.items.push(Diagnostic::new(path, pos, message));
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    /// Sorted by file and position, so output reads top to bottom.
    pub fn sorted(mut self) -> Self {
        self.items.sort_by(|a, b| (&a.path, a.pos).cmp(&(&b.path, b.pos)));
        self.items.dedup();
        self
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Levenshtein distance, for "did you mean" hints on names in users' files.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
