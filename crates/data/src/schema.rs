//! The example schema: the one row shape every data stage reads and writes as Parquet.
//!
//! | column       | type                                   | null | meaning |
//! | ------------ | -------------------------------------- | ---- | ------- |
//! | `id`         | string                                 | no   | stable example id: the source's `id` field when it has one, else derived from `source` and `source_row` (16 hex digits of blake3) |
//! | `input`      | string                                 | no   | the prompt; for chat rows, every turn before the last assistant turn rendered as `role: content` lines |
//! | `output`     | string                                 | no   | the completion; for chat rows, the last assistant turn; for classification, the label; `""` for plain text |
//! | `label`      | string                                 | yes  | class label, for classification and for `split`'s `stratify` |
//! | `messages`   | list of struct {`role`: string, `content`: string} | yes | the whole conversation, for chat data (roles `system`, `user`, `assistant`, …); when set, `input` and `output` are rendered from it |
//! | `source`     | string                                 | no   | where the row came from: a workspace-relative file, or the URL of a `url:` source |
//! | `source_row` | uint64                                 | no   | 1-based position in that source: the line for JSON Lines and text, the element for a JSON array, the record (after the header) for CSV and TSV, the row for Parquet, `1` for a whole text file |
//! | `parent_id`  | string                                 | yes  | for rows made by `augment`, the `id` of the row they were made from; `split` keeps a row with its parent |
//!
//! Row order is meaningful and stable: every stage keeps the order of its input, so that the same
//! input and seed give byte-identical files.
//!
//! This module converts between that schema and polars frames; it does no file IO.

use polars::prelude::*;

pub const ID: &str = "id";
pub const INPUT: &str = "input";
pub const OUTPUT: &str = "output";
pub const LABEL: &str = "label";
pub const MESSAGES: &str = "messages";
pub const SOURCE: &str = "source";
pub const SOURCE_ROW: &str = "source_row";
pub const PARENT_ID: &str = "parent_id";
pub const ROLE: &str = "role";
pub const CONTENT: &str = "content";

/// The columns of free text, whose values are almost all distinct: written without a dictionary.
pub const FREE_TEXT: [&str; 3] = [ID, INPUT, OUTPUT];

/// The columns, in the order they are written.
pub const COLUMNS: [&str; 8] = [
    ID, INPUT, OUTPUT, LABEL, MESSAGES, SOURCE, SOURCE_ROW, PARENT_ID,
];

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// One row of the example schema.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Example {
    pub id: String,
    pub input: String,
    pub output: String,
    pub label: Option<String>,
    pub messages: Option<Vec<Message>>,
    pub source: String,
    pub source_row: u64,
    pub parent_id: Option<String>,
}

impl Example {
    /// The id of the group this row belongs to: its parent's when it was derived from another row.
    pub fn group_id(&self) -> &str {
        self.parent_id.as_deref().unwrap_or(&self.id)
    }
}

/// Renders the turns of a conversation as the `input` text: one `role: content` block per turn,
/// separated by newlines.
pub fn render_turns(turns: &[Message]) -> String {
    let mut text = String::new();
    for (i, m) in turns.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        text.push_str(&m.role);
        text.push_str(": ");
        text.push_str(&m.content);
    }
    text
}

/// The position of the last assistant turn: the `output` of a chat row.
pub fn last_assistant(messages: &[Message]) -> Option<usize> {
    messages.iter().rposition(|m| m.role == "assistant")
}

/// Sets `input` and `output` of a chat row from its messages; `false` when there is no assistant
/// turn to learn from.
pub fn render_chat(example: &mut Example) -> bool {
    let Some(messages) = &example.messages else {
        return false;
    };
    let Some(last) = last_assistant(messages) else {
        return false;
    };
    example.input = render_turns(&messages[..last]);
    example.output = messages[last].content.clone();
    true
}

fn message_dtype() -> DataType {
    DataType::Struct(vec![
        Field::new(ROLE.into(), DataType::String),
        Field::new(CONTENT.into(), DataType::String),
    ])
}

/// The polars schema of an example frame.
pub fn frame_schema() -> Schema {
    Schema::from_iter([
        Field::new(ID.into(), DataType::String),
        Field::new(INPUT.into(), DataType::String),
        Field::new(OUTPUT.into(), DataType::String),
        Field::new(LABEL.into(), DataType::String),
        Field::new(MESSAGES.into(), DataType::List(Box::new(message_dtype()))),
        Field::new(SOURCE.into(), DataType::String),
        Field::new(SOURCE_ROW.into(), DataType::UInt64),
        Field::new(PARENT_ID.into(), DataType::String),
    ])
}

/// Builds a single-chunk frame from rows, columns in [`COLUMNS`] order.
pub fn to_frame(rows: &[Example]) -> PolarsResult<DataFrame> {
    let strings = |name: &str, f: &dyn Fn(&Example) -> &str| -> Column {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<&str>>())
    };
    let optional = |name: &str, f: &dyn Fn(&Example) -> Option<&str>| -> Column {
        Column::new(
            name.into(),
            rows.iter().map(f).collect::<Vec<Option<&str>>>(),
        )
    };

    let messages: Vec<Option<&[Message]>> = rows.iter().map(|e| e.messages.as_deref()).collect();
    let messages = messages_column(&messages)?;
    let columns = vec![
        strings(ID, &|e| &e.id),
        strings(INPUT, &|e| &e.input),
        strings(OUTPUT, &|e| &e.output),
        optional(LABEL, &|e| e.label.as_deref()),
        messages,
        strings(SOURCE, &|e| &e.source),
        Column::new(
            SOURCE_ROW.into(),
            rows.iter().map(|e| e.source_row).collect::<Vec<u64>>(),
        ),
        optional(PARENT_ID, &|e| e.parent_id.as_deref()),
    ];
    DataFrame::new(rows.len(), columns)
}

/// The `messages` column of rows with these conversations.
pub fn messages_column(rows: &[Option<&[Message]>]) -> PolarsResult<Column> {
    // All turns of all rows as one struct series, then each row's list is a slice of it.
    let turns: Vec<&Message> = rows
        .iter()
        .flat_map(|m| m.iter().copied().flatten())
        .collect();
    let roles = Series::new(
        ROLE.into(),
        turns.iter().map(|m| m.role.as_str()).collect::<Vec<&str>>(),
    );
    let contents = Series::new(
        CONTENT.into(),
        turns
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<&str>>(),
    );
    let flat = StructChunked::from_series(MESSAGES.into(), turns.len(), [roles, contents].iter())?
        .into_series();

    let mut builder = polars::chunked_array::builder::get_list_builder(
        &message_dtype(),
        turns.len(),
        rows.len(),
        MESSAGES.into(),
    );
    let mut offset = 0i64;
    for row in rows {
        match row {
            Some(m) => {
                builder.append_series(&flat.slice(offset, m.len()))?;
                offset += m.len() as i64;
            }
            None => builder.append_null(),
        }
    }
    let list = builder.finish().into_series();
    // An all-null list built without values can lose its inner type; cast it back.
    Ok(list
        .cast(&DataType::List(Box::new(message_dtype())))?
        .into_column())
}

/// Reads rows back from a frame in the example schema. Missing optional columns read as null;
/// a missing required column is an error naming the columns that exist.
pub fn from_frame(df: &DataFrame) -> Result<Vec<Example>, String> {
    let present: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let missing: Vec<&str> = [ID, INPUT, OUTPUT]
        .into_iter()
        .filter(|c| !present.iter().any(|p| p == c))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing column{} {}; the file has: {}",
            if missing.len() == 1 { "" } else { "s" },
            quoted(&missing),
            quoted(&present.iter().map(String::as_str).collect::<Vec<_>>())
        ));
    }
    let n = df.height();
    let err = |e: PolarsError| e.to_string();

    let strings = |name: &str| -> Result<Option<Vec<Option<String>>>, String> {
        let Ok(col) = df.column(name) else {
            return Ok(None);
        };
        let col = col
            .cast(&DataType::String)
            .map_err(|e| format!("column `{name}`: {e}"))?;
        let ca = col.str().map_err(err)?;
        Ok(Some(ca.iter().map(|v| v.map(str::to_owned)).collect()))
    };
    let required = |name: &str| -> Result<Vec<String>, String> {
        let values = strings(name)?.unwrap_or_default();
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| v.ok_or_else(|| format!("row {}: column `{name}` is null", i + 1)))
            .collect()
    };

    let ids = required(ID)?;
    let inputs = required(INPUT)?;
    let outputs = required(OUTPUT)?;
    let labels = strings(LABEL)?.unwrap_or_else(|| vec![None; n]);
    let sources = strings(SOURCE)?.unwrap_or_else(|| vec![None; n]);
    let parents = strings(PARENT_ID)?.unwrap_or_else(|| vec![None; n]);
    let source_rows: Vec<u64> = match df.column(SOURCE_ROW) {
        Ok(col) => {
            let col = col
                .cast(&DataType::UInt64)
                .map_err(|e| format!("column `{SOURCE_ROW}`: {e}"))?;
            col.u64()
                .map_err(err)?
                .iter()
                .map(|v| v.unwrap_or(0))
                .collect()
        }
        Err(_) => vec![0; n],
    };
    let messages = match df.column(MESSAGES) {
        Ok(col) => read_messages(col)?,
        Err(_) => vec![None; n],
    };

    let mut rows = Vec::with_capacity(n);
    let columns = ids
        .into_iter()
        .zip(inputs)
        .zip(outputs)
        .zip(labels)
        .zip(messages)
        .zip(sources)
        .zip(source_rows)
        .zip(parents);
    for (((((((id, input), output), label), messages), source), source_row), parent_id) in columns {
        rows.push(Example {
            id,
            input,
            output,
            label,
            messages,
            source: source.unwrap_or_default(),
            source_row,
            parent_id,
        });
    }
    Ok(rows)
}

fn read_messages(col: &Column) -> Result<Vec<Option<Vec<Message>>>, String> {
    let bad = |e: PolarsError| format!("column `{MESSAGES}`: {e}");
    let list = col.list().map_err(bad)?;
    let mut out = Vec::with_capacity(list.len());
    for turns in list.amortized_iter() {
        let Some(turns) = turns else {
            out.push(None);
            continue;
        };
        let turns = turns.as_ref().struct_().map_err(bad)?;
        let roles = turns.field_by_name(ROLE).map_err(bad)?;
        let contents = turns.field_by_name(CONTENT).map_err(bad)?;
        let roles = roles.str().map_err(bad)?;
        let contents = contents.str().map_err(bad)?;
        let messages = roles
            .iter()
            .zip(contents.iter())
            .map(|(r, c)| Message {
                role: r.unwrap_or_default().to_owned(),
                content: c.unwrap_or_default().to_owned(),
            })
            .collect();
        out.push(Some(messages));
    }
    Ok(out)
}

/// `a`, `b`, `c` for messages.
pub fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
