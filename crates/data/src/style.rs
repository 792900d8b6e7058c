//! Turning a source record into an example: the record styles people fine-tune from (prompt /
//! completion pairs, OpenAI chat, Alpaca, ShareGPT, labelled text) and the `fields` mapping that
//! renames their fields.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::format::kind;
use crate::schema::{self, Example, Message};

/// The shape of the records of a source.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Style {
    /// Prompt / completion records: `input` and `output` (required), `label` and `id` (used when
    /// present). Rename them with `fields`, e.g. `fields: {input: question, output: answer}`.
    #[default]
    Pairs,
    /// OpenAI chat: `messages`, a list of `{role, content}`. `output` is the last `assistant`
    /// turn; `input` is every turn before it, one `role: content` block per turn, separated by
    /// newlines; `messages` keeps the whole conversation.
    OpenaiChat,
    /// Alpaca: `instruction`, `input` (may be empty or absent) and `output`. `input` becomes the
    /// instruction, followed by a blank line and the input when there is one.
    Alpaca,
    /// ShareGPT: `conversations`, a list of `{from, value}`; `human` becomes role `user`, `gpt`
    /// becomes `assistant`. Then as `openai-chat`.
    Sharegpt,
    /// Labelled text for classification: `text` and `label`. `input` is the text; `output` and
    /// `label` are the label.
    Classification,
    /// Plain text for language-model pre-training: `text` becomes `input`; `output` is empty.
    Text,
}

/// Which field of a source record fills each column of the example schema. Each key defaults to
/// the field name of the style (`input`, `output`, `label`, `id`, `messages`; `text` for
/// classification; `conversations` for ShareGPT; `instruction` for Alpaca). A field named here
/// must exist in every record; `a.b` reads field `b` of object `a`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    /// The field holding the example id. Default `id`, used when present; without one, ids
    /// are derived from the source file and row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The field holding the prompt (`input`; `text` for `classification`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// The field holding the completion (`output`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The field holding the class label (`label`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The field holding the conversation, for `openai-chat` (`messages`) and `sharegpt`
    /// (`conversations`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<String>,
    /// The field holding the instruction, for `alpaca` (`instruction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
}

impl Fields {
    /// These fields, with any unset key taken from `fallback`.
    pub fn or(&self, fallback: &Fields) -> Fields {
        let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        Fields {
            id: pick(&self.id, &fallback.id),
            input: pick(&self.input, &fallback.input),
            output: pick(&self.output, &fallback.output),
            label: pick(&self.label, &fallback.label),
            messages: pick(&self.messages, &fallback.messages),
            instruction: pick(&self.instruction, &fallback.instruction),
        }
    }
}

/// Why a record could not become an example.
#[derive(Debug, PartialEq, Eq)]
pub enum RowError {
    /// A field the mapping needs is not in the record.
    Missing(String),
    /// The record has the field but its value is unusable.
    Bad(String),
}

impl RowError {
    pub fn message(&self) -> &str {
        match self {
            RowError::Missing(m) | RowError::Bad(m) => m,
        }
    }
}

/// A field to read: its name, the column it fills, and whether a record may lack it.
struct Wanted<'a> {
    name: &'a str,
    column: &'static str,
    required: bool,
}

/// A style with its fields resolved.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub style: Style,
    pub fields: Fields,
}

impl Mapping {
    fn wanted<'a>(
        &self,
        set: &'a Option<String>,
        default: &'a str,
        column: &'static str,
        required: bool,
    ) -> Wanted<'a> {
        match set {
            // A field the user named is always required: a typo must not pass silently.
            Some(name) => Wanted {
                name,
                column,
                required: true,
            },
            None => Wanted {
                name: default,
                column,
                required,
            },
        }
    }

    /// The example a record makes. `source` and `source_row` are filled in; `id` is the record's
    /// when it has one, else empty for the caller to derive.
    pub fn example(&self, record: &Map<String, Value>) -> Result<Example, RowError> {
        let f = &self.fields;
        let id = self.wanted(&f.id, "id", schema::ID, false);
        let mut example = Example {
            id: text(record, &id)?.unwrap_or_default(),
            ..Example::default()
        };
        match self.style {
            Style::Pairs => {
                example.input = required(record, &self.wanted(&f.input, "input", "input", true))?;
                example.output =
                    required(record, &self.wanted(&f.output, "output", "output", true))?;
                example.label = text(record, &self.wanted(&f.label, "label", "label", false))?;
            }
            Style::OpenaiChat | Style::Sharegpt => {
                let (default, role, content) = if self.style == Style::Sharegpt {
                    ("conversations", "from", "value")
                } else {
                    ("messages", "role", "content")
                };
                let messages = self.wanted(&f.messages, default, "messages", true);
                example.messages = conversation(record, &messages, role, content)?;
                example.label = text(record, &self.wanted(&f.label, "label", "label", false))?;
                if !schema::render_chat(&mut example) {
                    return Err(RowError::Bad(format!(
                        "field `{}` has no assistant turn",
                        messages.name
                    )));
                }
            }
            Style::Alpaca => {
                let instruction = required(
                    record,
                    &self.wanted(&f.instruction, "instruction", "input", true),
                )?;
                let input = text(record, &self.wanted(&f.input, "input", "input", false))?;
                example.input = match input {
                    Some(input) if !input.trim().is_empty() => format!("{instruction}\n\n{input}"),
                    _ => instruction,
                };
                example.output =
                    required(record, &self.wanted(&f.output, "output", "output", true))?;
                example.label = text(record, &self.wanted(&f.label, "label", "label", false))?;
            }
            Style::Text => {
                example.input = required(record, &self.wanted(&f.input, "text", "input", true))?;
            }
            Style::Classification => {
                example.input = required(record, &self.wanted(&f.input, "text", "input", true))?;
                let label = required(record, &self.wanted(&f.label, "label", "label", true))?;
                example.output = label.clone();
                example.label = Some(label);
            }
        }
        Ok(example)
    }
}

/// A field by name, or by a dotted path into nested objects.
fn lookup<'v>(record: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    if let Some(v) = record.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut value = record.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

fn missing(record: &Map<String, Value>, wanted: &Wanted<'_>) -> RowError {
    let mut names: Vec<&str> = record.keys().map(String::as_str).collect();
    names.sort_unstable();
    let has = if names.is_empty() {
        "the record has no fields".to_owned()
    } else {
        format!("the record has {}", schema::quoted(&names))
    };
    RowError::Missing(format!(
        "no field `{}` (for `{}`); {has}",
        wanted.name, wanted.column
    ))
}

fn required(record: &Map<String, Value>, wanted: &Wanted<'_>) -> Result<String, RowError> {
    text(record, wanted)?.ok_or_else(|| missing(record, wanted))
}

/// A field as text: strings as they are, numbers and booleans as written in JSON. Absent or null
/// is `None` unless the field is required.
fn text(record: &Map<String, Value>, wanted: &Wanted<'_>) -> Result<Option<String>, RowError> {
    match lookup(record, wanted.name) {
        None if wanted.required => Err(missing(record, wanted)),
        None | Some(Value::Null) if !wanted.required => Ok(None),
        Some(Value::Null) => Err(RowError::Bad(format!(
            "field `{}` (for `{}`) is null",
            wanted.name, wanted.column
        ))),
        None => unreachable!("handled above"),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
        Some(v) => Err(RowError::Bad(format!(
            "field `{}` (for `{}`) is {}, expected text",
            wanted.name,
            wanted.column,
            kind(v)
        ))),
    }
}

/// A conversation: a list of objects with a role and a content key.
fn conversation(
    record: &Map<String, Value>,
    wanted: &Wanted<'_>,
    role_key: &str,
    content_key: &str,
) -> Result<Option<Vec<Message>>, RowError> {
    let value = match lookup(record, wanted.name) {
        None if wanted.required => return Err(missing(record, wanted)),
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let bad = |what: String| RowError::Bad(format!("field `{}`: {what}", wanted.name));
    let Value::Array(turns) = value else {
        return Err(bad(format!("is {}, expected a list of turns", kind(value))));
    };
    let mut messages = Vec::with_capacity(turns.len());
    for (i, turn) in turns.iter().enumerate() {
        let Value::Object(turn) = turn else {
            return Err(bad(format!(
                "turn {} is {}, expected an object",
                i + 1,
                kind(turn)
            )));
        };
        let role = match turn.get(role_key) {
            Some(Value::String(r)) => r.clone(),
            _ => return Err(bad(format!("turn {} has no `{role_key}`", i + 1))),
        };
        let content = match turn.get(content_key) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(c)) => c.clone(),
            // The newer OpenAI form: a list of parts, of which the text parts count.
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            Some(other) => {
                return Err(bad(format!(
                    "turn {}: `{content_key}` is {}, expected text",
                    i + 1,
                    kind(other)
                )));
            }
        };
        messages.push(Message {
            role: if role_key == "from" {
                sharegpt_role(&role)
            } else {
                role
            },
            content,
        });
    }
    Ok(Some(messages))
}

fn sharegpt_role(from: &str) -> String {
    match from.to_lowercase().as_str() {
        "human" | "user" => "user".to_owned(),
        "gpt" | "assistant" | "chatgpt" | "bard" | "bing" | "model" => "assistant".to_owned(),
        "system" => "system".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(style: Style, fields: Value, record: Value, expected: Result<Value, &str>) {
        let mapping = Mapping {
            style,
            fields: serde_json::from_value(fields).unwrap(),
        };
        let Value::Object(record) = record else {
            panic!("record must be an object")
        };
        let got = mapping.example(&record);
        match expected {
            Ok(expected) => {
                let e = got.unwrap();
                let turns = e.messages.as_ref().map(|m| {
                    m.iter()
                        .map(|t| json!([t.role, t.content]))
                        .collect::<Vec<_>>()
                });
                let got = json!({
                    "id": e.id, "input": e.input, "output": e.output,
                    "label": e.label, "messages": turns,
                });
                assert_eq!(got, expected);
            }
            Err(message) => assert_eq!(got.unwrap_err().message(), message),
        }
    }

    #[test]
    fn pairs_with_fields() {
        check(
            Style::Pairs,
            json!({"input": "question", "output": "answer"}),
            json!({"question": "q?", "answer": 42, "id": 7}),
            Ok(json!({"id": "7", "input": "q?", "output": "42", "label": null, "messages": null})),
        );
        check(
            Style::Pairs,
            json!({"input": "question", "output": "answer"}),
            json!({"q": "q?", "answer": "a"}),
            Err("no field `question` (for `input`); the record has `answer`, `q`"),
        );
        check(
            Style::Pairs,
            json!({"input": "meta.q"}),
            json!({"meta": {"q": "nested"}, "output": "o", "label": "x"}),
            Ok(json!({"id": "", "input": "nested", "output": "o", "label": "x", "messages": null})),
        );
        check(
            Style::Pairs,
            json!({}),
            json!({"input": ["x"], "output": "o"}),
            Err("field `input` (for `input`) is an array, expected text"),
        );
    }

    #[test]
    fn chat_styles() {
        check(
            Style::OpenaiChat,
            json!({}),
            json!({"messages": [
                {"role": "system", "content": "be kind"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
            ]}),
            Ok(json!({
                "id": "", "input": "system: be kind\nuser: hi", "output": "hello", "label": null,
                "messages": [["system", "be kind"], ["user", "hi"], ["assistant", "hello"]],
            })),
        );
        check(
            Style::OpenaiChat,
            json!({}),
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            Err("field `messages` has no assistant turn"),
        );
        check(
            Style::Sharegpt,
            json!({}),
            json!({"id": "s1", "conversations": [
                {"from": "human", "value": "2+2?"},
                {"from": "gpt", "value": "4"},
            ]}),
            Ok(json!({
                "id": "s1", "input": "user: 2+2?", "output": "4", "label": null,
                "messages": [["user", "2+2?"], ["assistant", "4"]],
            })),
        );
    }

    #[test]
    fn alpaca_and_classification() {
        check(
            Style::Alpaca,
            json!({}),
            json!({"instruction": "Translate", "input": "chat", "output": "cat"}),
            Ok(
                json!({"id": "", "input": "Translate\n\nchat", "output": "cat", "label": null, "messages": null}),
            ),
        );
        check(
            Style::Alpaca,
            json!({}),
            json!({"instruction": "Say hi", "input": "", "output": "hi"}),
            Ok(
                json!({"id": "", "input": "Say hi", "output": "hi", "label": null, "messages": null}),
            ),
        );
        check(
            Style::Classification,
            json!({}),
            json!({"text": "great!", "label": "positive"}),
            Ok(
                json!({"id": "", "input": "great!", "output": "positive", "label": "positive", "messages": null}),
            ),
        );
        check(
            Style::Classification,
            json!({"input": "sentence"}),
            json!({"text": "great!", "label": 1}),
            Err("no field `sentence` (for `input`); the record has `label`, `text`"),
        );
        check(
            Style::Text,
            json!({"input": "answer"}),
            json!({"answer": "Restart it.", "question": "How?"}),
            Ok(
                json!({"id": "", "input": "Restart it.", "output": "", "label": null, "messages": null}),
            ),
        );
    }
}
