use std::collections::HashSet;

use serde_json::json;

use super::*;
use crate::schema::Message;
use crate::testing::{Workspace, write_rows};

const TEXTS: [&str; 10] = [
    "how can I get a refund for a broken item",
    "I need help to change my password quickly",
    "where is my order it is very late",
    "please cancel my subscription today",
    "the app shows an error when I pay",
    "can you send the invoice to my email",
    "my package arrived damaged what should I do",
    "how do I update my account settings",
    "is there a discount for new customers",
    "I want to return a small item",
];

fn support_rows() -> Vec<Example> {
    TEXTS
        .iter()
        .enumerate()
        .map(|(i, t)| Example {
            id: format!("r{i}"),
            input: (*t).into(),
            output: format!("answer {i}"),
            source: "data/x.jsonl".into(),
            source_row: i as u64 + 1,
            ..Example::default()
        })
        .collect()
}

fn augment(ws: &Workspace, options: serde_json::Value) -> crate::testing::Run {
    let mut with = json!({"data": "in.parquet"});
    for (k, v) in options.as_object().unwrap() {
        with[k] = v.clone();
    }
    ws.run(&Augment, "augment", with).unwrap()
}

fn workspace() -> Workspace {
    let ws = Workspace::new();
    write_rows(&ws, "in.parquet", &support_rows());
    ws
}

#[test]
fn never_exceeds_factor_and_keeps_parent_ids() {
    let ws = workspace();
    for (factor, bound) in [(1.0, 0), (1.5, 5), (2.0, 10), (3.25, 22)] {
        let run = augment(&ws, json!({"factor": factor, "seed": 7}));
        let rows = run.rows("data");
        let new: Vec<&Example> = rows.iter().filter(|r| r.parent_id.is_some()).collect();
        assert!(
            new.len() <= bound,
            "factor {factor}: {} new rows",
            new.len()
        );
        assert!(
            new.len() + 2 >= bound,
            "factor {factor}: only {} new rows",
            new.len()
        );
        assert_eq!(rows.len(), 10 + new.len());
        assert_eq!(run.metric("rows_new"), new.len() as f64);
        assert_eq!(run.stats()["rows_new"], new.len());

        let originals: HashSet<&str> = rows
            .iter()
            .filter(|r| r.parent_id.is_none())
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(originals.len(), 10);
        let mut ids = HashSet::new();
        for (i, r) in rows.iter().enumerate() {
            assert!(ids.insert(r.id.as_str()), "duplicate id {}", r.id);
            if let Some(parent) = &r.parent_id {
                assert!(originals.contains(parent.as_str()));
                // Placed after its source row, which it was made from.
                let source = rows[..i].iter().find(|s| &s.id == parent).unwrap();
                assert_ne!(r.input, source.input);
                assert_eq!(r.output, source.output);
                assert_eq!(r.source_row, source.source_row);
            }
        }
    }
}

#[test]
fn deterministic_by_seed() {
    let ws = workspace();
    let a = augment(&ws, json!({"factor": 2, "seed": 1})).bytes("data");
    let b = augment(&ws, json!({"factor": 2, "seed": 1})).bytes("data");
    let c = augment(&ws, json!({"factor": 2, "seed": 2})).bytes("data");
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn templates_paraphrase_the_input() {
    let ws = workspace();
    let run = augment(
        &ws,
        json!({"method": "templates", "templates": ["Question: {input}", "{input} (please answer briefly)"], "factor": 2}),
    );
    let rows = run.rows("data");
    let new: Vec<&Example> = rows.iter().filter(|r| r.parent_id.is_some()).collect();
    assert_eq!(new.len(), 10);
    for r in new {
        assert!(
            r.input.starts_with("Question: ") || r.input.ends_with(" (please answer briefly)"),
            "{}",
            r.input
        );
    }
    assert_eq!(run.rule("template"), 10);
}

#[test]
fn user_synonym_table() {
    let ws = Workspace::new();
    ws.write("syn.txt", "# pets\ncat, feline\n");
    let row = Example {
        id: "c".into(),
        input: "the Cat sat.".into(),
        output: "o".into(),
        ..Example::default()
    };
    write_rows(&ws, "in.parquet", &[row]);
    let with = json!({
        "data": "in.parquet", "synonyms": "syn.txt", "factor": 2,
        "alpha": {"random_insertion": 0, "random_swap": 0, "random_deletion": 0},
    });
    assert_eq!(
        Augment.reads(&with, ws.root()).unwrap(),
        ["in.parquet", "syn.txt"]
    );
    let run = ws.run(&Augment, "augment", with).unwrap();
    let rows = run.rows("data");
    assert_eq!(rows[1].input, "the Feline sat.");
    assert_eq!(rows[1].parent_id.as_deref(), Some("c"));
    assert_eq!(run.rule("synonym_replacement"), 1);
}

#[test]
fn chat_rows_augment_the_last_user_turn() {
    let ws = Workspace::new();
    let mut row = Example {
        id: "chat".into(),
        messages: Some(vec![
            Message {
                role: "system".into(),
                content: "Be brief.".into(),
            },
            Message {
                role: "user".into(),
                content: "please help me cancel my order".into(),
            },
            Message {
                role: "assistant".into(),
                content: "Done.".into(),
            },
        ]),
        ..Example::default()
    };
    crate::schema::render_chat(&mut row);
    write_rows(&ws, "in.parquet", &[row]);
    let run = ws
        .run(
            &Augment,
            "augment",
            json!({"data": "in.parquet", "factor": 2, "seed": 3}),
        )
        .unwrap();
    let rows = run.rows("data");
    assert_eq!(rows.len(), 2);
    let new = &rows[1];
    let messages = new.messages.as_ref().unwrap();
    assert_eq!(messages[0].content, "Be brief.");
    assert_ne!(messages[1].content, "please help me cancel my order");
    assert_eq!(
        new.input,
        format!("system: Be brief.\nuser: {}", messages[1].content)
    );
    assert_eq!(new.output, "Done.");
}

#[test]
fn plan_spreads_the_budget() {
    assert_eq!(variants_per_row(4, 1.0, 0), [0, 0, 0, 0]);
    assert_eq!(variants_per_row(4, 3.0, 0), [2, 2, 2, 2]);
    assert_eq!(variants_per_row(10, 1.1, 0).iter().sum::<usize>(), 1);
    assert_eq!(variants_per_row(4, 1.5, 9).iter().sum::<usize>(), 2);
}

#[test]
fn eda_operations() {
    let synonyms = Synonyms::parse("quick, fast", false).unwrap();
    let options: AugmentOptions = serde_json::from_value(json!({"data": "x"})).unwrap();
    let a = Augmenter {
        options: &options,
        synonyms: &synonyms,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    assert_eq!(
        a.apply(Op::SynonymReplacement, 0.1, "a Quick, fox", &mut rng),
        "a Fast, fox"
    );
    let inserted = a.apply(Op::RandomInsertion, 0.1, "a quick fox", &mut rng);
    assert_eq!(inserted.split(' ').count(), 4);
    assert!(inserted.contains("fast"));
    let swapped = a.apply(Op::RandomSwap, 0.5, "one two three four", &mut rng);
    let mut words: Vec<&str> = swapped.split(' ').collect();
    words.sort_unstable();
    assert_eq!(words, ["four", "one", "three", "two"]);
    let deleted = a.apply(Op::RandomDeletion, 0.99, "one two three four", &mut rng);
    assert_eq!(deleted.split(' ').count(), 1);
    assert_eq!(split_token("(Hello!)"), ("(", "Hello", "!)"));
    assert_eq!(split_token("..."), ("...", "", ""));
}

#[test]
fn option_errors() {
    let errors = |with: serde_json::Value| -> Vec<(Vec<String>, String)> {
        Augment
            .check(&with)
            .into_iter()
            .map(|e| (e.path, e.message))
            .collect()
    };
    assert!(errors(json!({"data": "x", "factor": 2, "seed": 3})).is_empty());
    assert_eq!(
        errors(json!({"data": "x", "factor": 0.5})),
        [(vec!["factor".to_owned()], "0.5 is below 1".to_owned())]
    );
    assert_eq!(
        errors(json!({"data": "x", "method": "templates", "templates": ["no placeholder"]})),
        [(
            vec!["templates".to_owned(), "0".to_owned()],
            "template `no placeholder` has no `{input}`".to_owned()
        )]
    );
    assert_eq!(
        errors(json!({"data": "x", "method": "both"})),
        [(
            vec!["templates".to_owned()],
            "method `templates` needs templates".to_owned()
        )]
    );
    assert_eq!(
        errors(json!({"data": "x", "alpha": {"random_swap": 2}})),
        [(
            vec!["alpha".to_owned(), "random_swap".to_owned()],
            "2 is not in [0, 1]".to_owned()
        )]
    );
    let hint = Augment.check(&json!({"data": "x", "alpha": {"swap": 0.1}}))[0]
        .hint
        .clone();
    assert_eq!(hint.as_deref(), Some("did you mean `random_swap`?"));
}
