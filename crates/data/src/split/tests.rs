use std::collections::HashMap;

use serde_json::json;

use super::*;
use crate::schema::Example;
use crate::testing::{Workspace, rows, write_rows};

fn split(ws: &Workspace, data: &str, options: serde_json::Value) -> crate::testing::Run {
    let mut with = json!({"data": data});
    for (k, v) in options.as_object().unwrap() {
        with[k] = v.clone();
    }
    ws.run(&Split, "split", with).unwrap()
}

/// Each row's id → the split it landed in.
fn placement(run: &crate::testing::Run) -> HashMap<String, &'static str> {
    let mut at = HashMap::new();
    for part in Part::ALL {
        for row in run.rows(part.name()) {
            assert!(
                at.insert(row.id, part.name()).is_none(),
                "a row is in two splits"
            );
        }
    }
    at
}

#[test]
fn default_ratios() {
    let ws = Workspace::new();
    write_rows(&ws, "in.parquet", &rows(1000));
    let run = split(&ws, "in.parquet", json!({"seed": 5}));
    assert_eq!(run.rows("train").len(), 800);
    assert_eq!(run.rows("validation").len(), 100);
    assert_eq!(run.rows("test").len(), 100);
    assert_eq!(run.metric("rows_train"), 800.0);
    assert_eq!(run.stats()["test"]["rows"], 100);
    // Each split keeps the input's order.
    let train = run.rows("train");
    assert!(train.windows(2).all(|w| w[0].source_row < w[1].source_row));
    // The same seed gives the same bytes; another seed another split. (Each run writes to the
    // same paths, so read the bytes before the next run.)
    let first: Vec<Vec<u8>> = ["train", "validation", "test", "stats"]
        .iter()
        .map(|p| run.bytes(p))
        .collect();
    let again = split(&ws, "in.parquet", json!({"seed": 5}));
    for (i, part) in ["train", "validation", "test", "stats"].iter().enumerate() {
        assert_eq!(first[i], again.bytes(part), "{part}");
    }
    let other = split(&ws, "in.parquet", json!({"seed": 6}));
    assert_ne!(first[2], other.bytes("test"));
}

#[test]
fn custom_ratios_and_empty_splits() {
    let ws = Workspace::new();
    write_rows(&ws, "in.parquet", &rows(10));
    let run = split(
        &ws,
        "in.parquet",
        json!({"ratios": {"train": 0.7, "test": 0.3}}),
    );
    assert_eq!(run.rows("train").len(), 7);
    assert_eq!(run.rows("validation").len(), 0);
    assert_eq!(run.rows("test").len(), 3);
}

#[test]
fn stratified_by_label() {
    let ws = Workspace::new();
    let mut data = rows(1000);
    for (i, r) in data.iter_mut().enumerate() {
        r.label = Some(if i % 10 == 0 { "rare" } else { "common" }.into());
    }
    write_rows(&ws, "in.parquet", &data);
    let run = split(&ws, "in.parquet", json!({"stratify": "label", "seed": 1}));
    let stats = run.stats();
    assert_eq!(stats["train"]["labels"], json!({"common": 720, "rare": 80}));
    assert_eq!(
        stats["validation"]["labels"],
        json!({"common": 90, "rare": 10})
    );
    assert_eq!(stats["test"]["labels"], json!({"common": 90, "rare": 10}));
}

#[test]
fn augmented_rows_never_leave_their_source_split() {
    for mode in ["random", "hash"] {
        let ws = Workspace::new();
        let source: Vec<Example> = (0..200)
            .map(|i| Example {
                id: format!("r{i}"),
                input: format!("please help me with my order number {i} today"),
                output: format!("answer {i}"),
                ..Example::default()
            })
            .collect();
        write_rows(&ws, "in.parquet", &source);
        let augmented = ws
            .run(
                &crate::Augment,
                "augment",
                json!({"data": "in.parquet", "factor": 3, "seed": 4}),
            )
            .unwrap();
        let rows = augmented.rows("data");
        assert!(rows.iter().filter(|r| r.parent_id.is_some()).count() > 300);
        let run = split(
            &ws,
            augmented.path("data"),
            json!({"mode": mode, "seed": 4}),
        );
        let at = placement(&run);
        assert_eq!(at.len(), rows.len());
        for row in &rows {
            if let Some(parent) = &row.parent_id {
                assert_eq!(at[&row.id], at[parent], "{mode}: {} left {parent}", row.id);
            }
        }
        // Every split got some groups.
        for part in Part::ALL {
            assert!(
                !run.rows(part.name()).is_empty(),
                "{mode}: {} is empty",
                part.name()
            );
        }
    }
}

#[test]
fn hash_mode_is_stable_when_rows_are_appended() {
    let ws = Workspace::new();
    let all = rows(1500);
    write_rows(&ws, "old.parquet", &all[..1000]);
    write_rows(&ws, "new.parquet", &all);
    let old = placement(&split(
        &ws,
        "old.parquet",
        json!({"mode": "hash", "seed": 9}),
    ));
    let new = placement(&split(
        &ws,
        "new.parquet",
        json!({"mode": "hash", "seed": 9}),
    ));
    for (id, part) in &old {
        assert_eq!(new[id], *part, "{id} moved");
    }
    let train = new.values().filter(|p| **p == "train").count();
    assert!((1100..1300).contains(&train), "{train} of 1500 in train");
    // The random mode, by contrast, reshuffles.
    let old = placement(&split(&ws, "old.parquet", json!({"seed": 9})));
    let new = placement(&split(&ws, "new.parquet", json!({"seed": 9})));
    assert!(old.iter().any(|(id, part)| new[id] != *part));
}

#[test]
fn option_errors() {
    let errors = |with: serde_json::Value| -> Vec<(Vec<String>, String, Option<String>)> {
        Split
            .check(&with)
            .into_iter()
            .map(|e| (e.path, e.message, e.hint))
            .collect()
    };
    assert!(
        errors(json!({"data": "x", "ratios": {"train": 0.7, "validation": 0.2, "test": 0.1}}))
            .is_empty()
    );
    assert_eq!(
        errors(json!({"data": "x", "ratios": {"train": 0.8, "validation": 0.1, "test": 0.2}})),
        [(
            vec!["ratios".to_owned()],
            "sum to 1.1, not 1".to_owned(),
            Some(
                "scaled to sum to 1: {train: 0.7273, validation: 0.0909, test: 0.1818}".to_owned()
            )
        )]
    );
    assert_eq!(
        errors(json!({"data": "x", "ratios": {"train": 1.0, "valid": 0.0}})),
        [(
            vec!["ratios".to_owned(), "valid".to_owned()],
            "unknown option `valid`".to_owned(),
            Some("did you mean `validation`?".to_owned())
        )]
    );
    assert_eq!(
        errors(json!({"data": "x", "mode": "hash", "stratify": "label"}))[0].1,
        "`stratify` needs `mode: random`"
    );
    assert_eq!(
        errors(json!({"data": "x", "stratify": "output"}))[0].1,
        "unknown value `output`"
    );
    assert_eq!(errors(json!({"data": "x", "seed": -1}))[0].0, ["seed"]);
    assert_eq!(
        errors(json!({"data": "../x.parquet"})),
        [(
            vec!["data".to_owned()],
            "`../x.parquet` leaves the workspace".to_owned(),
            Some("paths are relative to the workspace root".to_owned())
        )]
    );
}

#[test]
fn outputs_and_schema() {
    let names: Vec<&str> = Split.outputs().iter().map(|o| o.name).collect();
    assert_eq!(names, ["train", "validation", "test", "stats"]);
    let schema = Split.schema();
    assert_eq!(
        schema["properties"]["ratios"]["default"],
        json!({"train": 0.8, "validation": 0.1, "test": 0.1})
    );
}
