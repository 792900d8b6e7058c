//! Errors about a workflow file: each one carries the file, line and column it is about, the
//! offending source line and, where one exists, a hint (the closest valid key, the stage that does
//! define an output). Rendering is plain text in the style of rustc and cargo.

use std::fmt;
use std::path::{Path, PathBuf};

/// A position in a workflow file, 1-based.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    pub fn new(line: usize, col: usize) -> Pos {
        Pos { line, col }
    }
}

/// One problem in a workflow file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    pub file: PathBuf,
    pub pos: Pos,
    /// How many columns to underline (at least one).
    pub width: usize,
    pub message: String,
    pub hint: Option<String>,
    /// The source line the error is on, without its newline, when known.
    pub source_line: Option<String>,
}

impl SpecError {
    pub fn new(file: &Path, pos: Pos, message: impl Into<String>) -> SpecError {
        SpecError {
            file: file.to_path_buf(),
            pos,
            width: 1,
            message: message.into(),
            hint: None,
            source_line: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> SpecError {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_width(mut self, width: usize) -> SpecError {
        self.width = width.max(1);
        self
    }

    /// Attaches the source line the error points at, for rendering.
    pub fn with_source(mut self, source: &str) -> SpecError {
        if self.pos.line > 0 {
            self.source_line = source
                .lines()
                .nth(self.pos.line - 1)
                .map(|l| l.trim_end_matches('\r').to_owned());
        }
        self
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.message)?;
        if self.pos.line == 0 {
            write!(f, "  --> {}", self.file.display())?;
        } else {
            write!(
                f,
                "  --> {}:{}:{}",
                self.file.display(),
                self.pos.line,
                self.pos.col
            )?;
        }
        if let Some(line) = &self.source_line {
            let number = self.pos.line.to_string();
            let pad = " ".repeat(number.len());
            // Tabs would misalign the caret; show them as single spaces.
            let shown = line.replace('\t', " ");
            let col = self.pos.col.max(1);
            writeln!(f)?;
            writeln!(f, "{pad} |")?;
            writeln!(f, "{number} | {shown}")?;
            write!(
                f,
                "{pad} | {}{}",
                " ".repeat(col - 1),
                "^".repeat(self.width.max(1))
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  = hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

/// Every problem found in one workflow file, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl SpecErrors {
    pub fn single(error: SpecError) -> SpecErrors {
        SpecErrors(vec![error])
    }

    pub fn errors(&self) -> &[SpecError] {
        &self.0
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

impl From<SpecError> for SpecErrors {
    fn from(e: SpecError) -> SpecErrors {
        SpecErrors::single(e)
    }
}

/// The candidate closest to `word`, when one is close enough to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len().max(word.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// "did you mean `x`?" for the closest candidate, or a list of the valid ones.
pub fn suggestion<'a>(
    word: &str,
    what: &str,
    candidates: impl IntoIterator<Item = &'a str> + Clone,
) -> Option<String> {
    if let Some(c) = closest(word, candidates.clone()) {
        return Some(format!("did you mean `{c}`?"));
    }
    let all: Vec<String> = candidates.into_iter().map(|c| format!("`{c}`")).collect();
    if all.is_empty() {
        None
    } else {
        Some(format!("valid {what}: {}", all.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(word: &str, candidates: &[&str], expected: Option<&str>) {
        assert_eq!(
            closest(word, candidates.iter().copied()),
            expected,
            "{word}"
        );
    }

    #[test]
    fn closest_finds_typos_and_ignores_strangers() {
        check("comand", &["run", "inputs", "command"], Some("command"));
        check("ouptuts", &["run", "inputs", "outputs"], Some("outputs"));
        check("inptus", &["run", "inputs", "outputs"], Some("inputs"));
        check("rnu", &["run", "inputs", "outputs"], Some("run"));
        check("zzzzzz", &["run", "inputs", "outputs"], None);
        check("x", &["y"], None);
    }

    #[test]
    fn renders_with_caret_and_hint() {
        let e = SpecError::new(Path::new("p.yaml"), Pos::new(2, 3), "unknown key `rnu`")
            .with_width(3)
            .with_hint("did you mean `run`?")
            .with_source("a:\n  rnu: x\n");
        assert_eq!(
            e.to_string(),
            "unknown key `rnu`\n  --> p.yaml:2:3\n  |\n2 |   rnu: x\n  |   ^^^\n  = hint: did you mean `run`?"
        );
    }
}
