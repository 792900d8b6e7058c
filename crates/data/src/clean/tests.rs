use serde_json::json;

use super::*;
use crate::schema::Message;
use crate::testing::{Workspace, inputs, write_rows};

fn example(i: usize, input: &str, output: &str) -> Example {
    Example {
        id: format!("r{i}"),
        input: input.into(),
        output: output.into(),
        source: "data/x.jsonl".into(),
        source_row: i as u64 + 1,
        ..Example::default()
    }
}

/// A run with the workspace it read and wrote.
struct Cleaned {
    _ws: Workspace,
    run: crate::testing::Run,
}

impl std::ops::Deref for Cleaned {
    type Target = crate::testing::Run;
    fn deref(&self) -> &crate::testing::Run {
        &self.run
    }
}

/// Writes `pairs` as the input and runs clean with `options` added to `data`.
fn clean(pairs: &[(&str, &str)], options: serde_json::Value) -> Cleaned {
    let ws = Workspace::new();
    let rows: Vec<Example> = pairs
        .iter()
        .enumerate()
        .map(|(i, (a, b))| example(i, a, b))
        .collect();
    write_rows(&ws, "in.parquet", &rows);
    let mut with = json!({"data": "in.parquet"});
    for (k, v) in options.as_object().unwrap() {
        with[k] = v.clone();
    }
    let run = ws.run(&Clean, "clean", with).unwrap();
    Cleaned { _ws: ws, run }
}

#[test]
fn normalizes_unicode_and_whitespace() {
    let run = clean(
        &[
            ("  cafe\u{0301}\t au  lait ", "ok"),
            ("plain", "ok"),
            ("a\r\n\r\n\r\nb", " x "),
        ],
        json!({}),
    );
    assert_eq!(
        inputs(&run.rows("data")),
        ["caf\u{00e9} au lait", "plain", "a\n\nb"]
    );
    assert_eq!(run.rows("data")[2].output, "x");
    assert_eq!(run.rule("normalize"), 2);
    let off = clean(&[(" a ", "b")], json!({"normalize": false}));
    assert_eq!(inputs(&off.rows("data")), [" a "]);
}

#[test]
fn strip_and_scrub_count_changed_rows() {
    let run = clean(
        &[
            ("Buy $AAPL and $MSFT now", "ok"),
            (
                "mail me at jane.doe@example.com",
                "see https://example.com/a?b=1.",
            ),
            (
                "call +1 555-123-4567 or (555) 123-4567",
                "order 1234-5678 is fine",
            ),
            ("nothing here", "www.example.org"),
        ],
        json!({"strip": ["\\$[A-Z]{1,5}\\b"], "scrub": ["phone", "email", "url"]}),
    );
    let rows = run.rows("data");
    assert_eq!(rows[0].input, "Buy and now");
    assert_eq!(rows[1].input, "mail me at <EMAIL>");
    assert_eq!(rows[1].output, "see <URL>.");
    assert_eq!(rows[2].input, "call <PHONE> or <PHONE>");
    assert_eq!(rows[2].output, "order 1234-5678 is fine");
    assert_eq!(rows[3].output, "<URL>");
    assert_eq!(run.rule("strip"), 1);
    assert_eq!(run.rule("scrub_email"), 1);
    assert_eq!(run.rule("scrub_url"), 2);
    assert_eq!(run.rule("scrub_phone"), 1);
    // Rules are reported in the order they ran, whatever the order of the options.
    let order: Vec<String> = run.stats()["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        order,
        [
            "normalize",
            "strip",
            "scrub_email",
            "scrub_url",
            "scrub_phone"
        ]
    );
}

#[test]
fn filters_remove_rows_and_count_them() {
    let run = clean(
        &[
            ("keep this row please", "a fine answer"),
            ("short", "a fine answer"),
            ("a fine question here", ""),
            ("contains 2024-01-31 a date", "a fine answer"),
            ("a b c d e f g h i j k l", "too many words"),
            ("another good question", "x"),
        ],
        json!({
            "drop_regex": ["\\d{4}-\\d{2}-\\d{2}"],
            "drop_empty_output": true,
            "min_chars": 8,
            "max_words": 8,
            "length_fields": ["input"],
        }),
    );
    assert_eq!(
        inputs(&run.rows("data")),
        ["keep this row please", "another good question"]
    );
    assert_eq!(run.rule("drop_regex"), 1);
    assert_eq!(run.rule("drop_empty_output"), 1);
    assert_eq!(run.rule("min_chars"), 1);
    assert_eq!(run.rule("max_words"), 1);
    assert_eq!(run.metric("dropped_filtered"), 4.0);
    assert_eq!(run.stats()["rows_in"], 6);
    assert_eq!(run.stats()["rows_out"], 2);

    // By default both fields are measured: "x" is too short an output.
    let both = clean(
        &[
            ("long enough input", "x"),
            ("long enough input", "long enough output"),
        ],
        json!({"min_chars": 8}),
    );
    assert_eq!(both.rows("data").len(), 1);
}

#[test]
fn dedup_exact_and_normalized() {
    let pairs = [
        ("How do I reset my password?", "Use the link."),
        ("How do I reset my password?", "Use the link."),
        ("how do I reset my password", "use the link"),
        ("How do I reset my password?", "A different answer."),
        ("Something else", "Use the link."),
    ];
    let exact = clean(&pairs, json!({"dedup": "exact"}));
    assert_eq!(exact.rows("data").len(), 4);
    assert_eq!(exact.rule("dedup_exact"), 1);
    assert_eq!(exact.metric("dropped_duplicate"), 1.0);

    let normalized = clean(&pairs, json!({"dedup": "normalized"}));
    assert_eq!(normalized.rows("data").len(), 3);
    assert_eq!(normalized.rule("dedup_normalized"), 2);
    // The first of each group of duplicates is kept.
    assert_eq!(normalized.rows("data")[0].id, "r0");

    let by_input = clean(
        &pairs,
        json!({"dedup": "normalized", "dedup_fields": ["input"]}),
    );
    assert_eq!(by_input.rows("data").len(), 2);

    // Both, in one stage: exact first, then the normalised duplicates that remain, each counted;
    // the order written does not matter.
    for rules in [
        json!(["exact", "normalized"]),
        json!(["normalized", "exact"]),
    ] {
        let both = clean(&pairs, json!({"dedup": rules}));
        assert_eq!(both.rows("data"), normalized.rows("data"));
        assert_eq!(both.rule("dedup_exact"), 1);
        assert_eq!(both.rule("dedup_normalized"), 1);
        assert_eq!(both.metric("dropped_duplicate"), 2.0);
    }
    let listed = clean(&pairs, json!({"dedup": ["exact"]}));
    assert_eq!(listed.rows("data"), exact.rows("data"));
    let none = clean(&pairs, json!({"dedup": ["none"]}));
    assert_eq!(none.rows("data").len(), pairs.len());
}

#[test]
fn minhash_finds_planted_near_duplicates() {
    let topics = [
        "my parcel has not arrived after two weeks and tracking shows nothing",
        "the mobile app crashes every time i open the settings page",
        "can i change the delivery address after placing an order",
        "i was charged twice for the same subscription this month",
        "how long does a refund take to reach my bank account",
        "the discount code from your newsletter is not accepted at checkout",
    ];
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (i, t) in topics.iter().enumerate() {
        pairs.push((t.to_string(), format!("answer {i}")));
    }
    // Planted: small edits of topics 0, 2 and 4.
    pairs.push((
        "my parcel has not arrived after two weeks and the tracking shows nothing".into(),
        "answer 0".into(),
    ));
    pairs.push((
        "Can I change the delivery address after placing an order?".into(),
        "answer 2".into(),
    ));
    pairs.push((
        "how long does a refund take to reach my bank account??".into(),
        "answer 4".into(),
    ));
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let run = clean(
        &borrowed,
        json!({"near_dedup": {"threshold": 0.7, "seed": 3}}),
    );
    let rows = run.rows("data");
    assert_eq!(rows.len(), topics.len(), "{:?}", inputs(&rows));
    assert_eq!(run.rule("near_dedup"), 3);
    assert_eq!(run.metric("dropped_near_duplicate"), 3.0);
    // Exact dedup alone would have found only the normalised-equal one.
    let normalized = clean(&borrowed, json!({"dedup": "normalized"}));
    assert_eq!(normalized.rule("dedup_normalized"), 2);
}

#[test]
fn chat_rows_stay_consistent() {
    let ws = Workspace::new();
    let mut row = example(0, "", "");
    row.messages = Some(vec![
        Message {
            role: "user".into(),
            content: "write to  bob@example.com".into(),
        },
        Message {
            role: "assistant".into(),
            content: "done ".into(),
        },
    ]);
    crate::schema::render_chat(&mut row);
    write_rows(&ws, "in.parquet", &[row]);
    let run = ws
        .run(
            &Clean,
            "clean",
            json!({"data": "in.parquet", "scrub": ["email"]}),
        )
        .unwrap();
    let rows = run.rows("data");
    assert_eq!(rows[0].input, "user: write to <EMAIL>");
    assert_eq!(rows[0].output, "done");
    assert_eq!(
        rows[0].messages.as_ref().unwrap()[0].content,
        "write to <EMAIL>"
    );
}

#[test]
fn stats_json_is_sorted_and_deterministic() {
    let pairs = [("a  b", "c"), ("a b", "c")];
    let options = json!({"dedup": "exact", "near_dedup": {}});
    let first = clean(&pairs, options.clone());
    let second = clean(&pairs, options);
    assert_eq!(first.bytes("data"), second.bytes("data"));
    let text = String::from_utf8(first.bytes("stats")).unwrap();
    assert_eq!(text, String::from_utf8(second.bytes("stats")).unwrap());
    assert!(text.ends_with("}\n"));
    assert!(text.find("\"rows_in\"").unwrap() < text.find("\"rows_out\"").unwrap());
}

fn check(with: serde_json::Value, expected: &[(&[&str], &str)]) {
    let got: Vec<(Vec<String>, String)> = Clean
        .check(&with)
        .into_iter()
        .map(|e| (e.path, e.message))
        .collect();
    let expected: Vec<(Vec<String>, String)> = expected
        .iter()
        .map(|(p, m)| (p.iter().map(|s| s.to_string()).collect(), m.to_string()))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn option_errors() {
    check(
        json!({"data": "x.parquet", "dedup": "normalized", "min_chars": 3}),
        &[],
    );
    check(json!({}), &[(&["data"], "missing option `data`")]);
    check(
        json!({"data": "x", "strip": ["ok", "(unclosed"]}),
        &[(&["strip", "1"], "bad regex `(unclosed`: unclosed group")],
    );
    check(
        json!({"data": "x", "min_chars": 10, "max_chars": 5}),
        &[(
            &["min_chars"],
            "`min_chars` (10) is above `max_chars` (5); every row would be dropped",
        )],
    );
    check(
        json!({"data": "x", "near_dedup": {"threshold": 1.5, "bands": 0}}),
        &[
            (
                &["near_dedup", "threshold"],
                "threshold 1.5 is not in (0, 1]",
            ),
            (&["near_dedup", "bands"], "bands 0 is not in 1..=128"),
        ],
    );
    check(
        json!({"data": "x", "scrub": ["emails"]}),
        &[(&["scrub", "0"], "unknown value `emails`")],
    );
    check(
        json!({"data": "x", "dedup": ["exact", "normalised"]}),
        &[(&["dedup", "1"], "unknown value `normalised`")],
    );
    check(
        json!({"data": "x", "dedup": "exakt"}),
        &[(&["dedup"], "unknown value `exakt`")],
    );
    check(
        json!({"data": "x", "dedup": ["exact"], "dedup_fields": []}),
        &[(&["dedup_fields"], "no fields to compare")],
    );
    let hint = Clean.check(&json!({"data": "x", "dedup": ["normalised"]}))[0]
        .hint
        .clone();
    assert_eq!(hint.as_deref(), Some("did you mean `normalized`?"));
    let hint = Clean.check(&json!({"data": "x", "dedupe": "exact"}))[0]
        .hint
        .clone();
    assert_eq!(hint.as_deref(), Some("did you mean `dedup`?"));
    let hint = Clean.check(&json!({"data": "x", "scrub": ["emails"]}))[0]
        .hint
        .clone();
    assert_eq!(hint.as_deref(), Some("did you mean `email`?"));
}

/// `unique` keeps exactly the first row of every class of equal rows, exact or normalised, as a
/// plain first-seen set does, over many rows with duplicates far apart.
#[test]
fn unique_keeps_the_first_of_every_class() {
    let texts: Vec<(String, String)> = (0..5000)
        .map(|i: usize| {
            let n = (i * 7919) % 1300;
            let input = if i.is_multiple_of(3) {
                format!("Question {n}?")
            } else {
                format!("question  {n}")
            };
            (input, format!("answer {}", n % 17))
        })
        .collect();
    let rows: Vec<Texts<'_>> = texts
        .iter()
        .map(|(input, output)| Texts { input, output })
        .collect();
    for normalized in [false, true] {
        for fields in [vec![TextField::Input], both_fields()] {
            let mut seen = std::collections::HashSet::new();
            let expected: Vec<bool> = rows
                .iter()
                .map(|row| {
                    let key: Vec<String> = fields
                        .iter()
                        .map(|f| {
                            if normalized {
                                text::dedup_key(f.of(row))
                            } else {
                                f.of(row).to_owned()
                            }
                        })
                        .collect();
                    seen.insert(key)
                })
                .collect();
            assert_eq!(unique(&rows, &fields, normalized), expected);
            assert!(expected.iter().any(|k| !k));
        }
    }
}

/// More edits than fit in one visit's bit mask (64): every pattern is still applied in order and
/// counted on its own.
#[test]
fn many_strip_patterns_are_each_counted() {
    let texts: Vec<String> = (0..140).map(|i| format!("a x{} b", i % 70)).collect();
    let pairs: Vec<(&str, &str)> = texts.iter().map(|t| (t.as_str(), "c")).collect();
    let patterns: Vec<String> = (0..70).map(|k| format!(r"\bx{k}\b")).collect();
    let run = clean(&pairs, json!({ "strip": patterns }));
    assert!(inputs(&run.rows("data")).iter().all(|t| *t == "a b"));
    let counts: Vec<u64> = run.stats()["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["rule"] == "strip")
        .map(|r| r["changed"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, vec![2; 70]);
}
