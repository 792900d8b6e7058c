use polars::prelude::*;

use super::*;
use crate::schema::Message;
use crate::testing::{self, Workspace};

/// Rows of every shape: plain, labelled, derived from a parent, chat, long and empty text.
fn mixed_rows() -> Vec<Example> {
    let mut rows = testing::rows(5);
    rows[1].label = Some("billing".into());
    rows[2].parent_id = Some("r0".into());
    rows[3].messages = Some(vec![
        Message {
            role: "user".into(),
            content: "hello".into(),
        },
        Message {
            role: "assistant".into(),
            content: "hi there".into(),
        },
    ]);
    rows[3].input = "user: hello".into();
    rows[3].output = "hi there".into();
    rows[4].input = "a longer text that does not fit in a view ".repeat(3);
    rows[4].output = String::new();
    rows
}

fn written(ws: &Workspace, rel: &str, table: &mut Examples) -> Vec<u8> {
    let path = ws.root().join(rel);
    table.write(&path).unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn columns_built_row_by_row_write_the_bytes_rows_write() {
    let ws = Workspace::new();
    for rows in [mixed_rows(), testing::rows(3), Vec::new()] {
        testing::write_rows(&ws, "rows.parquet", &rows);
        let expected = std::fs::read(ws.root().join("rows.parquet")).unwrap();

        let mut columns = ExampleColumns::default();
        for row in &rows {
            if row.messages.is_none() && row.parent_id.is_none() {
                columns.push_texts(&RowTexts {
                    id: &row.id,
                    input: &row.input,
                    output: &row.output,
                    label: row.label.as_deref(),
                    source: &row.source,
                    source_row: row.source_row,
                });
            } else {
                columns.push(row.clone());
            }
        }
        let mut table = columns.finish().unwrap();
        assert_eq!(table.to_rows(), rows);
        assert_eq!(written(&ws, "columns.parquet", &mut table), expected);
    }
}

#[test]
fn reading_agrees_with_reading_rows() {
    let ws = Workspace::new();
    // Our own files (with and without chat rows), and a user's file in another shape: columns
    // missing, another order, an extra column, other types.
    testing::write_rows(&ws, "plain.parquet", &testing::rows(4));
    testing::write_rows(&ws, "mixed.parquet", &mixed_rows());
    let mut df = df!(
        "output" => ["b", "d"],
        "extra" => [1, 2],
        "input" => ["a", "c"],
        "id" => ["x", "y"],
        "source_row" => [7i32, 8],
    )
    .unwrap();
    let path = ws.root().join("user.parquet");
    ParquetWriter::new(std::fs::File::create(&path).unwrap())
        .finish(&mut df)
        .unwrap();
    for rel in ["plain.parquet", "mixed.parquet", "user.parquet"] {
        let path = ws.root().join(rel);
        let table = Examples::read(&path, rel).unwrap();
        assert_eq!(
            table.to_rows(),
            crate::read_examples(&path, rel).unwrap(),
            "{rel}"
        );
    }
    assert!(
        Examples::read(&ws.root().join("mixed.parquet"), "m")
            .unwrap()
            .has_messages()
    );
    assert!(
        !Examples::read(&ws.root().join("plain.parquet"), "p")
            .unwrap()
            .has_messages()
    );
}

#[test]
fn reading_reports_what_reading_rows_reports() {
    let ws = Workspace::new();
    let mut df = df!("input" => ["a"], "output" => [None::<&str>], "id" => ["x"]).unwrap();
    let path = ws.root().join("bad.parquet");
    ParquetWriter::new(std::fs::File::create(&path).unwrap())
        .finish(&mut df)
        .unwrap();
    let columns = Examples::read(&path, "bad.parquet")
        .err()
        .unwrap()
        .to_string();
    let rows = crate::read_examples(&path, "bad.parquet")
        .unwrap_err()
        .to_string();
    assert_eq!(columns, rows);
    assert!(columns.contains("column `output` is null"), "{columns}");
}

#[test]
fn texts_filters_and_replacements_keep_row_order() {
    let mut table = Examples::from_rows(&mixed_rows()).unwrap();
    assert_eq!(table.text(schema::ID), ["r0", "r1", "r2", "r3", "r4"]);
    assert_eq!(
        table.optional_text(schema::PARENT_ID),
        [None, None, Some("r0"), None, None]
    );
    let upper: Vec<Option<String>> = table
        .text(schema::INPUT)
        .iter()
        .map(|t| Some(t.to_uppercase()))
        .collect();
    table.patch_text(schema::INPUT, &upper).unwrap();
    let kept = table.filter(&[false, true, false, true, true]).unwrap();
    assert_eq!(kept.text(schema::ID), ["r1", "r3", "r4"]);
    assert_eq!(kept.text(schema::INPUT)[0], "INPUT 1");
    assert_eq!(kept.height(), 3);
}

/// Patching a text column over several chunks, with new texts short enough to be inlined in their
/// views and long ones, gives the table of the patched rows, written byte for byte the same.
#[test]
fn patched_texts_are_the_rows_with_those_texts() {
    let ws = Workspace::new();
    let mut rows = testing::rows(3000);
    for (i, row) in rows.iter_mut().enumerate() {
        if i % 7 == 0 {
            row.output = format!("a long enough original output {i} to sit in a buffer");
        }
    }
    let mut table = Examples::from_rows(&rows[..1000]).unwrap();
    for part in [&rows[1000..1001], &rows[1001..]] {
        let part = Examples::from_rows(part).unwrap();
        table.df.vstack_mut(&part.df).unwrap();
    }
    assert_eq!(table.strings(schema::OUTPUT).chunks().len(), 3);
    let new: Vec<Option<String>> = (0..rows.len())
        .map(|i| match i % 5 {
            0 => Some(format!("short {i}")),
            1 => Some(format!("a new text, {i}, too long to fit in a view")),
            _ => None,
        })
        .collect();
    table.patch_text(schema::OUTPUT, &new).unwrap();
    for (row, new) in rows.iter_mut().zip(&new) {
        if let Some(new) = new {
            row.output = new.clone();
        }
    }
    assert_eq!(table.to_rows(), rows);
    testing::write_rows(&ws, "expected.parquet", &rows);
    let expected = std::fs::read(ws.root().join("expected.parquet")).unwrap();
    assert_eq!(written(&ws, "patched.parquet", &mut table), expected);
}
