//! References inside strings: `${{ params.NAME }}`, `${{ stages.STAGE.outputs.NAME }}`,
//! `${{ inputs.NAME }}` and `${{ outputs.NAME }}`. Parsing only; what a reference resolves to is
//! decided in `resolve`.

use std::fmt;

/// What a `${{ … }}` names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ref {
    Param(String),
    StageOutput { stage: String, output: String },
    Input(String),
    Output(String),
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ref::Param(p) => write!(f, "params.{p}"),
            Ref::StageOutput { stage, output } => write!(f, "stages.{stage}.outputs.{output}"),
            Ref::Input(i) => write!(f, "inputs.{i}"),
            Ref::Output(o) => write!(f, "outputs.{o}"),
        }
    }
}

/// A piece of a string: literal text, or a reference with its byte range in the string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    Ref {
        target: Ref,
        start: usize,
        end: usize,
    },
}

/// A malformed reference, at a byte offset of the string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: usize,
    pub len: usize,
    pub message: String,
    pub hint: Option<String>,
}

const OPEN: &str = "${{";
const CLOSE: &str = "}}";

/// Splits a string into text and references.
pub fn parse(s: &str) -> Result<Vec<Segment>, TemplateError> {
    let mut segments = Vec::new();
    let mut rest = 0;
    while let Some(found) = s[rest..].find(OPEN) {
        let start = rest + found;
        if start > rest {
            segments.push(Segment::Text(s[rest..start].to_owned()));
        }
        let inner_start = start + OPEN.len();
        let Some(close) = s[inner_start..].find(CLOSE) else {
            return Err(TemplateError {
                offset: start,
                len: OPEN.len(),
                message: "unclosed `${{`".into(),
                hint: Some("a reference is written `${{ params.NAME }}`".into()),
            });
        };
        let end = inner_start + close + CLOSE.len();
        let target =
            parse_ref(s[inner_start..inner_start + close].trim()).map_err(|(message, hint)| {
                TemplateError {
                    offset: start,
                    len: end - start,
                    message,
                    hint,
                }
            })?;
        segments.push(Segment::Ref { target, start, end });
        rest = end;
    }
    if rest < s.len() {
        segments.push(Segment::Text(s[rest..].to_owned()));
    }
    Ok(segments)
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn parse_ref(expr: &str) -> Result<Ref, (String, Option<String>)> {
    let parts: Vec<&str> = expr.split('.').collect();
    let bad = |why: &str| {
        (
            format!("invalid reference `{expr}`: {why}"),
            Some(
                "write `params.NAME`, `stages.STAGE.outputs.NAME`, `inputs.NAME` or `outputs.NAME`"
                    .to_owned(),
            ),
        )
    };
    if expr.is_empty() {
        return Err(bad("it is empty"));
    }
    if let Some(p) = parts.iter().find(|p| !is_ident(p)) {
        return Err(bad(&format!(
            "`{p}` is not a name (letters, digits, `_` and `-`)"
        )));
    }
    match parts.as_slice() {
        ["params", name] => Ok(Ref::Param((*name).to_owned())),
        ["inputs", name] => Ok(Ref::Input((*name).to_owned())),
        ["outputs", name] => Ok(Ref::Output((*name).to_owned())),
        ["stages", stage, "outputs", output] => Ok(Ref::StageOutput {
            stage: (*stage).to_owned(),
            output: (*output).to_owned(),
        }),
        ["stages", _, other, _] => Err(bad(&format!(
            "a stage exposes only `outputs`, not `{other}`"
        ))),
        [root, ..] => {
            let roots = ["params", "stages", "inputs", "outputs"];
            match crate::error::closest(root, roots) {
                Some(c) if c != *root => Err((
                    format!("invalid reference `{expr}`: unknown namespace `{root}`"),
                    Some(format!("did you mean `{c}`?")),
                )),
                _ => Err(bad("wrong number of parts")),
            }
        }
        [] => Err(bad("it is empty")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(s: &str) -> Vec<String> {
        parse(s)
            .unwrap()
            .into_iter()
            .filter_map(|seg| match seg {
                Segment::Ref { target, .. } => Some(target.to_string()),
                Segment::Text(_) => None,
            })
            .collect()
    }

    #[test]
    fn parses_each_kind_of_reference() {
        assert_eq!(
            refs("a ${{ params.lr }} ${{stages.s-1.outputs.data}} ${{ inputs.x }}${{ outputs.y }}"),
            vec![
                "params.lr",
                "stages.s-1.outputs.data",
                "inputs.x",
                "outputs.y"
            ]
        );
        assert_eq!(refs("no refs $HOME {{ x }}"), Vec::<String>::new());
    }

    #[test]
    fn keeps_text_and_offsets() {
        let segs = parse("x${{ params.a }}y").unwrap();
        assert_eq!(
            segs,
            vec![
                Segment::Text("x".into()),
                Segment::Ref {
                    target: Ref::Param("a".into()),
                    start: 1,
                    end: 16
                },
                Segment::Text("y".into()),
            ]
        );
    }

    fn check_err(s: &str, message_start: &str, hint: Option<&str>) {
        let e = parse(s).unwrap_err();
        assert!(e.message.starts_with(message_start), "{s}: {}", e.message);
        if let Some(h) = hint {
            assert_eq!(e.hint.as_deref(), Some(h), "{s}");
        }
    }

    #[test]
    fn rejects_malformed_references() {
        check_err("${{ params.lr ", "unclosed", None);
        check_err("${{ }}", "invalid reference ``", None);
        check_err(
            "${{ param.lr }}",
            "invalid reference `param.lr`: unknown namespace",
            Some("did you mean `params`?"),
        );
        check_err(
            "${{ stages.a.output.b }}",
            "invalid reference `stages.a.output.b`: a stage exposes only",
            None,
        );
        check_err("${{ params.a b }}", "invalid reference `params.a b`", None);
        check_err("${{ params }}", "invalid reference `params`", None);
    }
}
