//! An example table held as polars columns, so that a stage that only looks at text and drops or
//! splits rows (`clean`, `split`) never turns the whole file into row structs and back: reading
//! into the example schema, the text columns as `&str`, replacing a text column, keeping rows by
//! a mask, writing.
//!
//! Rows ([`Example`]) are built only where a rule needs a whole row (chat rows, whose messages
//! are rewritten together with `input` and `output`) and for files not already in the schema.

use std::path::Path;

use polars::prelude::*;
use polars_arrow::array::MutableBinaryViewArray;
use sluice_stage::StageError;

use crate::schema::{self, Example, Message};

/// A table in the example schema: every column of [`schema::COLUMNS`], in that order, with its
/// type; no nulls in `id`, `input`, `output`, `source` and `source_row`.
pub struct Examples {
    df: DataFrame,
}

impl Examples {
    /// Reads an example file, as [`crate::read_examples`] would, but into columns.
    pub fn read(path: &Path, shown: &str) -> Result<Examples, StageError> {
        let df = crate::parquet::read_frame(path, shown)?;
        Examples::conform(df).map_err(|e| StageError::failed(format!("{shown}: {e}")))
    }

    /// A frame in the example schema. One that is already in it (what every data stage writes)
    /// is kept as it is; anything else goes through rows, so that missing optional columns,
    /// other types and nulls are handled (and reported) exactly as [`schema::from_frame`] does.
    fn conform(df: DataFrame) -> Result<Examples, String> {
        if conforms(&df) {
            return Ok(Examples { df });
        }
        let rows = schema::from_frame(&df)?;
        Examples::from_rows(&rows).map_err(|e| e.to_string())
    }

    /// The table of these rows.
    pub fn from_rows(rows: &[Example]) -> PolarsResult<Examples> {
        Ok(Examples {
            df: schema::to_frame(rows)?,
        })
    }

    /// The rows of the table.
    pub fn to_rows(&self) -> Vec<Example> {
        schema::from_frame(&self.df).expect("an example table converts to rows")
    }

    pub fn height(&self) -> usize {
        self.df.height()
    }

    /// Whether any row has `messages` (a chat row).
    pub fn has_messages(&self) -> bool {
        self.df
            .column(schema::MESSAGES)
            .is_ok_and(|c| c.null_count() < c.len())
    }

    fn strings(&self, name: &str) -> &StringChunked {
        self.df
            .column(name)
            .and_then(Column::str)
            .expect("an example table has its string columns")
    }

    /// A column that has no nulls (`id`, `input`, `output`, `source`), one `&str` per row.
    pub fn text(&self, name: &str) -> Vec<&str> {
        let column = self.strings(name);
        let mut values = Vec::with_capacity(column.len());
        for chunk in column.downcast_iter() {
            values.extend(chunk.values_iter());
        }
        values
    }

    /// A column that may have nulls (`label`, `parent_id`), one value per row.
    pub fn optional_text(&self, name: &str) -> Vec<Option<&str>> {
        self.strings(name).iter().collect()
    }

    /// Replaces a column by one of the same length.
    fn replace(&mut self, name: &str, column: Column) -> PolarsResult<()> {
        self.df.replace(name, column)?;
        Ok(())
    }

    /// Gives the rows of a text column that have a new value (`Some`) that value. The other
    /// rows keep their text where it is stored: each chunk keeps its buffers, and only the new
    /// texts are written, into one more buffer (polars' `zip_with` copied every text).
    pub fn patch_text(&mut self, name: &str, new: &[Option<String>]) -> PolarsResult<()> {
        let column = self.strings(name);
        let mut start = 0;
        let mut chunks = Vec::with_capacity(column.chunks().len());
        for chunk in column.downcast_iter() {
            let end = start + chunk.len();
            chunks.push(patch_chunk(chunk, &new[start..end])?);
            start = end;
        }
        let patched = StringChunked::from_chunk_iter(name.into(), chunks);
        self.replace(name, patched.into_column())
    }

    /// The rows whose `keep` is true, in order.
    pub fn filter(&self, keep: &[bool]) -> PolarsResult<Examples> {
        if keep.iter().all(|k| *k) {
            return Ok(Examples {
                df: self.df.clone(),
            });
        }
        let mask = BooleanChunked::from_slice("keep".into(), keep);
        Ok(Examples {
            df: self.df.filter(&mask)?,
        })
    }

    /// Writes the table as [`crate::write_examples`] does: the file depends only on the rows.
    pub fn write(&mut self, path: &Path) -> Result<(), StageError> {
        crate::parquet::write_examples_frame(path, &mut self.df)
    }
}

/// Builds a table row by row, column by column, without a row struct per row: what `collect`
/// makes from its sources. The table equals [`Examples::from_rows`] of the same rows.
pub struct ExampleColumns {
    id: TextBuilder,
    input: TextBuilder,
    output: TextBuilder,
    label: TextBuilder,
    /// The rows that have messages (few, or none), by position.
    messages: Vec<(usize, Vec<Message>)>,
    source: TextBuilder,
    source_row: Vec<u64>,
    parent_id: TextBuilder,
}

type TextBuilder = MutableBinaryViewArray<str>;

impl Default for ExampleColumns {
    fn default() -> ExampleColumns {
        ExampleColumns {
            id: TextBuilder::new(),
            input: TextBuilder::new(),
            output: TextBuilder::new(),
            label: TextBuilder::new(),
            messages: Vec::new(),
            source: TextBuilder::new(),
            source_row: Vec::new(),
            parent_id: TextBuilder::new(),
        }
    }
}

/// One row's text fields, for [`ExampleColumns::push_texts`].
pub struct RowTexts<'a> {
    pub id: &'a str,
    pub input: &'a str,
    pub output: &'a str,
    pub label: Option<&'a str>,
    pub source: &'a str,
    pub source_row: u64,
}

impl ExampleColumns {
    /// Makes room for `rows` more rows, so that the columns grow once rather than by doubling.
    pub fn reserve(&mut self, rows: usize) {
        for text in [
            &mut self.id,
            &mut self.input,
            &mut self.output,
            &mut self.label,
            &mut self.source,
            &mut self.parent_id,
        ] {
            text.reserve(rows);
        }
        self.source_row.reserve(rows);
    }

    /// Appends a row.
    pub fn push(&mut self, row: Example) {
        let texts = RowTexts {
            id: &row.id,
            input: &row.input,
            output: &row.output,
            label: row.label.as_deref(),
            source: &row.source,
            source_row: row.source_row,
        };
        if let Some(messages) = row.messages {
            self.messages.push((self.source_row.len(), messages));
        }
        self.push_row(&texts, row.parent_id.as_deref());
    }

    /// Appends a row that has no messages and no parent, from borrowed text.
    pub fn push_texts(&mut self, row: &RowTexts<'_>) {
        self.push_row(row, None);
    }

    fn push_row(&mut self, row: &RowTexts<'_>, parent_id: Option<&str>) {
        self.id.push_value(row.id);
        self.input.push_value(row.input);
        self.output.push_value(row.output);
        self.label.push(row.label);
        self.source.push_value(row.source);
        self.source_row.push(row.source_row);
        self.parent_id.push(parent_id);
    }

    /// The table, its columns in [`schema::COLUMNS`] order.
    pub fn finish(self) -> PolarsResult<Examples> {
        let height = self.source_row.len();
        let mut messages: Vec<Option<&[Message]>> = vec![None; height];
        for (row, turns) in &self.messages {
            messages[*row] = Some(turns);
        }
        let text = |name: &str, builder: TextBuilder| {
            StringChunked::with_chunk(name.into(), builder.freeze()).into_column()
        };
        let columns = vec![
            text(schema::ID, self.id),
            text(schema::INPUT, self.input),
            text(schema::OUTPUT, self.output),
            text(schema::LABEL, self.label),
            schema::messages_column(&messages)?,
            text(schema::SOURCE, self.source),
            Column::new(schema::SOURCE_ROW.into(), self.source_row),
            text(schema::PARENT_ID, self.parent_id),
        ];
        Ok(Examples {
            df: DataFrame::new(height, columns)?,
        })
    }
}

/// Whether a frame is in the example schema already, with nothing that [`schema::from_frame`]
/// would change: the columns in order with their types, no nulls where a row cannot have one,
/// and no messages (whose missing roles and contents reading through rows would fill in).
fn conforms(df: &DataFrame) -> bool {
    let expected = schema::frame_schema();
    let columns = df.columns();
    columns.len() == expected.len()
        && columns
            .iter()
            .zip(expected.iter())
            .all(|(c, (name, dtype))| c.name() == name && c.dtype() == dtype)
        && [
            schema::ID,
            schema::INPUT,
            schema::OUTPUT,
            schema::SOURCE,
            schema::SOURCE_ROW,
        ]
        .iter()
        .all(|name| df.column(name).is_ok_and(|c| c.null_count() == 0))
        && df
            .column(schema::MESSAGES)
            .is_ok_and(|c| c.null_count() == c.len())
}

#[cfg(test)]
mod tests;

/// `chunk` with the texts of `new` (one per row) where they are `Some`: the views of the other
/// rows still point into the chunk's buffers, shared, and the new texts go into buffers of their
/// own after them.
fn patch_chunk(
    chunk: &polars_arrow::array::Utf8ViewArray,
    new: &[Option<String>],
) -> PolarsResult<polars_arrow::array::Utf8ViewArray> {
    use polars_arrow::array::View;
    use polars_buffer::Buffer;
    if new.iter().all(Option::is_none) {
        return Ok(chunk.clone());
    }
    let old = chunk.data_buffers();
    let first = u32::try_from(old.len())
        .map_err(|_| polars_err!(ComputeError: "too many buffers in a text column"))?;
    let mut views: Vec<View> = chunk.views().as_slice().to_vec();
    let mut added: Vec<Vec<u8>> = Vec::new();
    for (view, text) in views.iter_mut().zip(new) {
        if let Some(text) = text {
            *view = View::new_with_buffers(text.as_bytes(), first, &mut added);
        }
    }
    let buffers: Vec<Buffer<u8>> = old
        .iter()
        .cloned()
        .chain(added.into_iter().map(Buffer::from))
        .collect();
    let validity = polars_arrow::array::Array::validity(chunk).cloned();
    let (views, buffers) = (views.into(), buffers.into());
    if cfg!(debug_assertions) {
        // What `new_unchecked_unknown_md` below may assume, checked in debug builds (the tests).
        return polars_arrow::array::Utf8ViewArray::try_new(
            ArrowDataType::Utf8View,
            views,
            buffers,
            validity,
        );
    }
    // SAFETY: every view is valid UTF-8 within the buffers: the old views are the chunk's own,
    // into its buffers, which keep their indices; each new view was made by `new_with_buffers`
    // from a `&str`, into the added buffers, which it numbers from `first`. (`try_new` would
    // check every text again, a pass over the whole column on one thread.)
    #[allow(unsafe_code)]
    Ok(unsafe {
        polars_arrow::array::Utf8ViewArray::new_unchecked_unknown_md(
            ArrowDataType::Utf8View,
            views,
            buffers,
            validity,
            None,
        )
    })
}
