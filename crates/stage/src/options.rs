//! Reading a stage's `with:` options into its typed options struct, with errors that point at the
//! offending key and suggest the closest valid one.

use crate::{OptionError, StageError};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

/// Deserializes `with` into `T`, turning the first serde error into an [`OptionError`] with its
/// path inside `with` (serde stops at the first error, so there is at most one).
pub fn parse<T: DeserializeOwned>(with: &serde_json::Value) -> Result<T, OptionError> {
    // A stage with no `with:` at all gets `null`; read it as an empty map.
    let empty = serde_json::Value::Object(serde_json::Map::new());
    let with = if with.is_null() { &empty } else { with };
    serde_path_to_error::deserialize(with).map_err(|e| {
        let mut path: Vec<String> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                Segment::Seq { index } => Some(index.to_string()),
                Segment::Map { key } => Some(key.clone()),
                Segment::Enum { variant } => Some(variant.clone()),
                Segment::Unknown => None,
            })
            .collect();
        explain(&mut path, &e.inner().to_string())
    })
}

/// Options for a stage run: `check` has already accepted them, so an error here is a bug or a
/// caller that skipped `check`.
pub fn parse_for_run<T: DeserializeOwned>(with: &serde_json::Value) -> Result<T, StageError> {
    parse(with).map_err(|e| {
        let at = if e.path.is_empty() {
            String::new()
        } else {
            format!(" at `{}`", e.path.join("."))
        };
        StageError::failed(format!("invalid options{at}: {}", e.message))
    })
}

/// An error unless `path` is relative and stays inside the workspace.
pub fn workspace_path(at: &[&str], path: &str) -> Option<OptionError> {
    let p = std::path::Path::new(path);
    if path.is_empty() {
        Some(OptionError::new(at, "the path is empty"))
    } else if p.is_absolute() {
        Some(
            OptionError::new(at, format!("`{path}` is absolute"))
                .hint("paths are relative to the workspace root"),
        )
    } else if p
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        Some(
            OptionError::new(at, format!("`{path}` leaves the workspace"))
                .hint("paths are relative to the workspace root"),
        )
    } else {
        None
    }
}

/// The JSON Schema of an options struct.
pub fn schema<T: JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T)).expect("a schema is plain JSON")
}

/// Rewords serde's messages in the user's terms and finds a hint.
fn explain(path: &mut Vec<String>, message: &str) -> OptionError {
    if let Some((name, expected)) = unknown(message, "unknown field `") {
        if path.last() != Some(&name) {
            path.push(name.clone());
        }
        let error = OptionError {
            path: std::mem::take(path),
            message: format!("unknown option `{name}`"),
            hint: None,
        };
        return with_suggestion(error, &name, &expected, "options");
    }
    if let Some((name, expected)) = unknown(message, "unknown variant `") {
        let error = OptionError {
            path: std::mem::take(path),
            message: format!("unknown value `{name}`"),
            hint: None,
        };
        return with_suggestion(error, &name, &expected, "values");
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default().to_owned();
        path.push(name.clone());
        return OptionError {
            path: std::mem::take(path),
            message: format!("missing option `{name}`"),
            hint: None,
        };
    }
    OptionError {
        path: std::mem::take(path),
        message: message.to_owned(),
        hint: None,
    }
}

/// Parses serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`", or "there
/// are no fields").
fn unknown(message: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix(prefix)?;
    let (name, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((name.to_owned(), expected))
}

fn with_suggestion(error: OptionError, name: &str, expected: &[String], what: &str) -> OptionError {
    match closest(name, expected.iter().map(String::as_str)) {
        Some(best) => error.hint(format!("did you mean `{best}`?")),
        None if expected.is_empty() => error,
        None => {
            let list: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
            error.hint(format!("valid {what}: {}", list.join(", ")))
        }
    }
}

/// The candidate closest to `name`, if it is close enough to be a likely typo, or else the one
/// candidate that contains it (`swap` → `random_swap`).
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    let candidates: Vec<&str> = candidates.into_iter().collect();
    let typo = candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_lowercase()), *c))
        .filter(|(d, c)| *d <= (c.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c);
    if typo.is_some() || lower.chars().count() < 3 {
        return typo;
    }
    let mut containing = candidates
        .iter()
        .filter(|c| c.to_lowercase().contains(&lower));
    match (containing.next(), containing.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        data: String,
        #[serde(default)]
        inner: Vec<Inner>,
        #[serde(default)]
        mode: Option<Mode>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        path: String,
        #[serde(default)]
        format: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Random,
        Hash,
    }

    fn check(with: serde_json::Value, path: &[&str], message: &str, hint: Option<&str>) {
        let e = parse::<Outer>(&with).unwrap_err();
        assert_eq!(e.path, path, "{e:?}");
        assert_eq!(e.message, message, "{e:?}");
        assert_eq!(e.hint.as_deref(), hint, "{e:?}");
    }

    #[test]
    fn errors_have_paths_and_hints() {
        use serde_json::json;
        check(
            json!({"data": "x", "inner": [{"path": "a", "fromat": "csv"}]}),
            &["inner", "0", "fromat"],
            "unknown option `fromat`",
            Some("did you mean `format`?"),
        );
        check(
            json!({"dat": "x"}),
            &["dat"],
            "unknown option `dat`",
            Some("did you mean `data`?"),
        );
        check(
            json!({"data": "x", "zzzzzz": 1}),
            &["zzzzzz"],
            "unknown option `zzzzzz`",
            Some("valid options: `data`, `inner`, `mode`"),
        );
        check(json!({}), &["data"], "missing option `data`", None);
        check(
            json!({"data": "x", "mode": "hsah"}),
            &["mode"],
            "unknown value `hsah`",
            Some("did you mean `hash`?"),
        );
        check(
            json!({"data": 3}),
            &["data"],
            "invalid type: integer `3`, expected a string",
            None,
        );
    }
}
