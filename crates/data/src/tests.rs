//! Tests across the four kinds: a whole pipeline, run on pools of different sizes, and the
//! option schemas.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::testing::Workspace;

/// A small support dataset with duplicates, tickers and noise planted in it.
fn dataset() -> String {
    let mut lines = Vec::new();
    for i in 0..300 {
        let question = match i % 7 {
            0 => format!("How do I reset my password for account {i}?"),
            1 => format!("Is $AAPL a good buy? Ticket {i}"),
            2 => "Where is my order?".to_owned(),
            3 => format!("My parcel {i} arrived   damaged, can I get a refund"),
            4 => format!("mail me at user{i}@example.com please, order {i}"),
            5 => "  where is my ORDER  ".to_owned(),
            _ => format!("Can I change the delivery address of order {i}?"),
        };
        let label = ["account", "billing", "shipping"][i % 3];
        lines.push(
            json!({"question": question, "answer": format!("Answer number {}", i % 50), "topic": label})
                .to_string(),
        );
    }
    lines.join("\n") + "\n"
}

/// Runs collect → clean → augment → split and returns every output's bytes.
fn pipeline(ws: &Workspace) -> BTreeMap<String, Vec<u8>> {
    let mut bytes = BTreeMap::new();
    let collect = ws
        .run(
            &crate::Collect,
            "collect",
            json!({"sources": [{"path": "data/*.jsonl"}], "fields": {"input": "question", "output": "answer", "label": "topic"}}),
        )
        .unwrap();
    let clean = ws
        .run(
            &crate::Clean,
            "clean",
            json!({
                "data": collect.path("data"), "dedup": "normalized", "min_chars": 4,
                "strip": ["\\$[A-Z]{1,5}\\b"], "scrub": ["email"], "near_dedup": {"seed": 1},
            }),
        )
        .unwrap();
    let augment = ws
        .run(
            &crate::Augment,
            "augment",
            json!({"data": clean.path("data"), "factor": 2.5, "seed": 7, "method": "both", "templates": ["Q: {input}"]}),
        )
        .unwrap();
    let split = ws
        .run(
            &crate::Split,
            "split",
            json!({"data": augment.path("data"), "seed": 7, "stratify": "label"}),
        )
        .unwrap();
    for (stage, run) in [
        ("collect", &collect),
        ("clean", &clean),
        ("augment", &augment),
        ("split", &split),
    ] {
        for name in run.outputs.keys() {
            bytes.insert(format!("{stage}.{name}"), run.bytes(name));
        }
    }
    assert!(augment.metric("rows_new") > 0.0);
    assert!(clean.metric("dropped_duplicate") > 0.0);
    bytes
}

#[test]
fn outputs_do_not_depend_on_the_thread_count() {
    let mut results = Vec::new();
    for threads in [1, 4] {
        let ws = Workspace::new();
        ws.write("data/support.jsonl", dataset());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        results.push(pool.install(|| pipeline(&ws)));
    }
    assert_eq!(results[0].len(), 10);
    for (name, bytes) in &results[0] {
        assert!(
            bytes == &results[1][name],
            "{name} differs between 1 and 4 threads"
        );
    }
}

/// Every option of every kind has a description: they are the user's documentation.
#[test]
fn every_option_is_documented() {
    fn walk(schema: &Value, defs: &Value, at: &str, missing: &mut Vec<String>) {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference.rsplit('/').next().unwrap();
            return walk(&defs[name], defs, at, missing);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            for s in schema
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                walk(s, defs, at, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(items, defs, &format!("{at}[]"), missing);
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                let path = format!("{at}.{name}");
                if property.get("description").is_none() {
                    missing.push(path.clone());
                }
                walk(property, defs, &path, missing);
            }
        }
    }
    let mut missing = Vec::new();
    for kind in crate::kinds() {
        let schema = kind.schema();
        let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
        walk(&schema, &defs, kind.name(), &mut missing);
        assert!(!kind.description().is_empty());
        // Version 1 wrote zstd pages, version 2 dictionary-encoded free text when it could,
        // version 3 the minimum and maximum of free text; a cache of any of them must not stand
        // for what this version writes.
        assert_eq!(kind.version(), 4, "{}", kind.name());
    }
    assert!(missing.is_empty(), "undocumented options: {missing:?}");
}

#[test]
fn kinds_and_outputs() {
    let kinds: Vec<(&str, Vec<&str>)> = crate::kinds()
        .iter()
        .map(|k| (k.name(), k.outputs().iter().map(|o| o.file).collect()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("collect", vec!["data.parquet", "stats.json"]),
            ("clean", vec!["data.parquet", "stats.json"]),
            ("augment", vec!["data.parquet", "stats.json"]),
            (
                "split",
                vec![
                    "train.parquet",
                    "validation.parquet",
                    "test.parquet",
                    "stats.json"
                ]
            ),
        ]
    );
}
