//! The one module that touches YAML libraries. `serde_yaml` deserialises the typed workflow (swap
//! it for a maintained fork here and nowhere else); `yaml-rust2`'s event parser builds a
//! [`SourceMap`] from YAML paths to positions, so that errors found after deserialisation still
//! point at a line and column. Duplicate keys, which serde_yaml silently merges, are caught here.

use std::collections::HashMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::error::{Pos, SpecError, suggestion};

/// Where a node of the document sits in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// The key that holds the node, for mapping entries.
    pub key: Option<Pos>,
    /// The node itself.
    pub value: Pos,
}

/// Positions of every node, by path (`["stages", "train", "run"]`; sequence items by index).
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    spans: HashMap<Vec<String>, Span>,
    line_starts: Vec<usize>,
}

impl SourceMap {
    pub fn span(&self, path: &[&str]) -> Option<Span> {
        let key: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
        self.spans.get(&key).copied()
    }

    /// Position of the key that holds `path`, else of the value, else of the nearest ancestor.
    pub fn key_pos(&self, path: &[&str]) -> Pos {
        for n in (0..=path.len()).rev() {
            if let Some(span) = self.span(&path[..n]) {
                return span.key.unwrap_or(span.value);
            }
        }
        Pos::new(1, 1)
    }

    /// Position of the value at `path`, else of the nearest ancestor.
    pub fn value_pos(&self, path: &[&str]) -> Pos {
        for n in (0..=path.len()).rev() {
            if let Some(span) = self.span(&path[..n]) {
                return span.value;
            }
        }
        Pos::new(1, 1)
    }

    /// Byte offset of a position in the source.
    pub fn offset(&self, source: &str, pos: Pos) -> usize {
        let Some(start) = self.line_starts.get(pos.line.saturating_sub(1)) else {
            return source.len();
        };
        let line = &source[*start..];
        let in_line: usize = line
            .chars()
            .take(pos.col.saturating_sub(1))
            .map(char::len_utf8)
            .sum();
        start + in_line
    }

    /// Position of a byte offset in the source.
    pub fn pos_of(&self, source: &str, offset: usize) -> Pos {
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts.get(line).copied().unwrap_or(0);
        let col = source
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(0);
        Pos::new(line + 1, col + 1)
    }
}

enum Frame {
    Map {
        path: Vec<String>,
        /// The key whose value comes next, when a key has been read.
        key: Option<(String, Pos)>,
        seen: HashMap<String, Pos>,
    },
    Seq {
        path: Vec<String>,
        next: usize,
    },
}

struct Builder<'a> {
    file: &'a Path,
    map: SourceMap,
    stack: Vec<Frame>,
    errors: Vec<SpecError>,
}

fn pos(mark: &Marker) -> Pos {
    Pos::new(mark.line(), mark.col() + 1)
}

impl Builder<'_> {
    /// Called for every node; returns the node's path when it is a value (not a mapping key).
    fn node(&mut self, scalar: Option<&str>, at: Pos) -> Option<Vec<String>> {
        match self.stack.last_mut() {
            None => {
                self.map.spans.insert(
                    Vec::new(),
                    Span {
                        key: None,
                        value: at,
                    },
                );
                Some(Vec::new())
            }
            Some(Frame::Seq { path, next }) => {
                let mut p = path.clone();
                p.push(next.to_string());
                *next += 1;
                self.map.spans.insert(
                    p.clone(),
                    Span {
                        key: None,
                        value: at,
                    },
                );
                Some(p)
            }
            Some(Frame::Map { path, key, seen }) => match key.take() {
                None => {
                    let name = scalar.unwrap_or("<complex key>").to_owned();
                    if let Some(first) = seen.get(&name) {
                        let mut shown = path.clone();
                        shown.push(name.clone());
                        self.errors.push(
                            SpecError::new(
                                self.file,
                                at,
                                format!("duplicate key `{}`", shown.join(".")),
                            )
                            .with_width(name.chars().count())
                            .with_hint(format!("first defined at line {}", first.line)),
                        );
                    } else {
                        seen.insert(name.clone(), at);
                    }
                    *key = Some((name, at));
                    None
                }
                Some((name, key_at)) => {
                    let mut p = path.clone();
                    p.push(name);
                    self.map.spans.insert(
                        p.clone(),
                        Span {
                            key: Some(key_at),
                            value: at,
                        },
                    );
                    Some(p)
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let at = pos(&mark);
        match ev {
            Event::Scalar(value, ..) => {
                self.node(Some(&value), at);
            }
            Event::Alias(_) => {
                self.node(None, at);
            }
            Event::MappingStart(..) => {
                if let Some(path) = self.node(None, at) {
                    self.stack.push(Frame::Map {
                        path,
                        key: None,
                        seen: HashMap::new(),
                    });
                } else {
                    // A mapping used as a key: track it so the stack stays balanced.
                    self.stack.push(Frame::Map {
                        path: vec!["<complex key>".into()],
                        key: None,
                        seen: HashMap::new(),
                    });
                }
            }
            Event::SequenceStart(..) => {
                let path = self
                    .node(None, at)
                    .unwrap_or_else(|| vec!["<complex key>".into()]);
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

/// Parses `source` for positions. Syntax errors and duplicate keys are errors.
pub fn source_map(file: &Path, source: &str) -> Result<SourceMap, Vec<SpecError>> {
    let mut line_starts = vec![0];
    line_starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
    let mut builder = Builder {
        file,
        map: SourceMap {
            spans: HashMap::new(),
            line_starts,
        },
        stack: Vec::new(),
        errors: Vec::new(),
    };
    let mut parser = Parser::new_from_str(source);
    if let Err(e) = parser.load(&mut builder, false) {
        let at = pos(e.marker());
        return Err(vec![
            SpecError::new(file, at, format!("invalid YAML: {}", e.info())).with_source(source),
        ]);
    }
    if builder.errors.is_empty() {
        Ok(builder.map)
    } else {
        Err(builder
            .errors
            .into_iter()
            .map(|e| e.with_source(source))
            .collect())
    }
}

/// Deserialises `source` into `T`, turning serde's messages into positioned errors with hints.
pub fn from_str<T: DeserializeOwned>(file: &Path, source: &str) -> Result<T, SpecError> {
    serde_yaml::from_str(source).map_err(|e| {
        let at = e
            .location()
            .map(|l| Pos::new(l.line(), l.column()))
            .unwrap_or(Pos::new(1, 1));
        let full = e.to_string();
        let message = match e.location() {
            Some(l) => full
                .strip_suffix(&format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or(&full)
                .to_owned(),
            None => full,
        };
        explain(file, at, &message).with_source(source)
    })
}

/// Converts serde's "path: message" into our wording, with the closest valid key as a hint.
fn explain(file: &Path, at: Pos, message: &str) -> SpecError {
    let (path, detail) = match message.split_once(": ") {
        Some((p, d)) if !p.contains(' ') => (p, d),
        _ => ("", message),
    };
    let place = describe_path(path);
    if let Some(rest) = detail.strip_prefix("unknown field `")
        && let Some((word, expected)) = rest.split_once('`')
    {
        let valid = backticked(expected);
        let mut err = SpecError::new(file, at, format!("unknown key `{word}` in {place}"))
            .with_width(word.chars().count());
        if let Some(hint) = suggestion(word, "keys", valid.iter().map(String::as_str)) {
            err = err.with_hint(hint);
        }
        return err;
    }
    if let Some(rest) = detail.strip_prefix("unknown variant `")
        && let Some((word, expected)) = rest.split_once('`')
    {
        let valid = backticked(expected);
        let mut err = SpecError::new(file, at, format!("unknown value `{word}` for {place}"))
            .with_width(word.chars().count());
        if let Some(hint) = suggestion(word, "values", valid.iter().map(String::as_str)) {
            err = err.with_hint(hint);
        }
        return err;
    }
    if let Some(rest) = detail.strip_prefix("missing field `")
        && let Some((word, _)) = rest.split_once('`')
    {
        return SpecError::new(file, at, format!("{place} is missing the key `{word}`"));
    }
    if let Some(rest) = detail.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        return SpecError::new(
            file,
            at,
            format!("wrong type for {place}: expected {expected}, found {found}"),
        );
    }
    if let Some(rest) = detail.strip_prefix("invalid value: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        return SpecError::new(
            file,
            at,
            format!("invalid value for {place}: expected {expected}, found {found}"),
        );
    }
    SpecError::new(file, at, format!("{place}: {detail}"))
}

/// The words between backticks in serde's "expected one of `a`, `b`".
fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, w)| w.to_owned())
        .collect()
}

/// "stages.train.inputs" → "stage `train` (key `inputs`)".
fn describe_path(path: &str) -> String {
    let parts: Vec<&str> = if path.is_empty() || path == "." {
        Vec::new()
    } else {
        path.split('.').collect()
    };
    match parts.as_slice() {
        [] => "the workflow".to_owned(),
        ["stages", stage] => format!("stage `{stage}`"),
        ["stages", stage, rest @ ..] => format!("`{}` of stage `{stage}`", rest.join(".")),
        _ => format!("`{path}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_paths_to_positions() {
        let src = "version: 1\nstages:\n  a:\n    run: echo\n    inputs:\n      x: data.txt\n  b: {run: y}\nlist:\n  - one\n  - two\n";
        let map = source_map(Path::new("w.yaml"), src).unwrap();
        let check = |path: &[&str], key: Option<(usize, usize)>, value: (usize, usize)| {
            let span = map.span(path).unwrap_or_else(|| panic!("{path:?}"));
            assert_eq!(span.key, key.map(|(l, c)| Pos::new(l, c)), "{path:?}");
            assert_eq!(span.value, Pos::new(value.0, value.1), "{path:?}");
        };
        check(&["version"], Some((1, 1)), (1, 10));
        check(&["stages", "a", "run"], Some((4, 5)), (4, 10));
        check(&["stages", "a", "inputs", "x"], Some((6, 7)), (6, 10));
        check(&["list", "1"], None, (10, 5));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let src = "stages:\n  a:\n    run: x\n  a:\n    run: y\n";
        let errs = source_map(Path::new("w.yaml"), src).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].message, "duplicate key `stages.a`");
        assert_eq!(errs[0].pos, Pos::new(4, 3));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let errs = source_map(Path::new("w.yaml"), "a: [1\n").unwrap_err();
        assert!(errs[0].message.starts_with("invalid YAML"), "{}", errs[0]);
        assert_eq!(errs[0].pos.line, 2);
    }

    #[test]
    fn offsets_round_trip() {
        let src = "a: b\nçd: x\n";
        let map = source_map(Path::new("w.yaml"), src).unwrap();
        let p = Pos::new(2, 2);
        let off = map.offset(src, p);
        assert_eq!(&src[off..off + 1], "d");
        assert_eq!(map.pos_of(src, off), p);
    }
}
