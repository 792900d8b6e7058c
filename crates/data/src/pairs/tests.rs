use super::*;
use crate::format::jsonl_record;

fn mapping(fields: serde_json::Value) -> Mapping {
    Mapping {
        style: Style::Pairs,
        fields: serde_json::from_value(fields).unwrap(),
    }
}

/// What the fast path makes of a line (`None`: it declines), after checking that whatever it
/// accepts the general path accepts too, with the same fields.
fn fast(mapping: &Mapping, line: &str) -> Option<[Option<String>; 4]> {
    let names = PairNames::new(mapping).unwrap();
    let pair = names.parse(line.as_bytes())?;
    let record = jsonl_record(1, line.as_bytes());
    let fields = record
        .fields
        .unwrap_or_else(|e| panic!("fast path took a malformed line {line:?}: {e}"));
    let example = mapping
        .example(&fields)
        .unwrap_or_else(|e| panic!("fast path took a line the mapping rejects {line:?}: {e:?}"));
    let got = [
        pair.id.map(Cow::into_owned),
        Some(pair.input.into_owned()),
        Some(pair.output.into_owned()),
        pair.label.map(Cow::into_owned),
    ];
    let id = (!example.id.is_empty()).then_some(example.id);
    let expected = [id, Some(example.input), Some(example.output), example.label];
    assert_eq!(got, expected, "{line:?}");
    Some(got)
}

/// The id, input, output and label the fast path reads, or `None` when it declines.
type Expected<'a> = Option<[Option<&'a str>; 4]>;

fn check(mapping: &Mapping, line: &str, expected: Expected<'_>) {
    let expected = expected.map(|e| e.map(|f| f.map(str::to_owned)));
    assert_eq!(fast(mapping, line), expected, "{line:?}");
}

#[test]
fn takes_plain_records_and_declines_everything_else() {
    let qa = mapping(serde_json::json!({"input": "question", "output": "answer"}));
    let plain = mapping(serde_json::json!({}));
    let named = mapping(serde_json::json!({"id": "key", "label": "topic"}));
    let dotted = mapping(serde_json::json!({"input": "q.text", "output": "a"}));
    let cases: &[(&Mapping, &str, Expected<'_>)] = &[
        (
            &qa,
            r#"{"id": "r1", "question": "Hi?", "answer": "Yes."}"#,
            Some([Some("r1"), Some("Hi?"), Some("Yes."), None]),
        ),
        (
            &qa,
            r#"{"question": "Hi?", "answer": "Yes.", "extra": [1, {"a": null}]}"#,
            Some([None, Some("Hi?"), Some("Yes."), None]),
        ),
        (
            &qa,
            r#"{"question": "tab\there \u00e9", "answer": "\"q\""}"#,
            Some([None, Some("tab\there é"), Some("\"q\""), None]),
        ),
        (
            &qa,
            r#"{"question": "a", "answer": "b", "question": "c"}"#,
            Some([None, Some("c"), Some("b"), None]),
        ),
        (
            &qa,
            r#"{"question": "a", "answer": "b", "label": null, "id": null}"#,
            Some([None, Some("a"), Some("b"), None]),
        ),
        (
            &plain,
            r#"{"input": "a", "output": "b", "label": "x"}"#,
            Some([None, Some("a"), Some("b"), Some("x")]),
        ),
        (
            &named,
            r#"{"key": "k", "input": "a", "output": "b", "topic": "t"}"#,
            Some([Some("k"), Some("a"), Some("b"), Some("t")]),
        ),
        // For the general path: numbers as text, missing and null fields, nesting, bad JSON.
        (&qa, r#"{"id": 7, "question": "a", "answer": "b"}"#, None),
        (&qa, r#"{"question": "a", "answer": 2.50}"#, None),
        (&qa, r#"{"question": "a"}"#, None),
        (&qa, r#"{"question": null, "answer": "b"}"#, None),
        (&qa, r#"{"question": "a", "answer": "b"} x"#, None),
        (
            &qa,
            r#"{"question": "a", "answer": "b", "other": "\ud800"}"#,
            None,
        ),
        (&qa, r#"["question", "answer"]"#, None),
        (&qa, r#"{"question": "a", "answer": "b""#, None),
        (
            &named,
            r#"{"input": "a", "output": "b", "topic": "t"}"#,
            None,
        ),
        (&named, r#"{"key": "k", "input": "a", "output": "b"}"#, None),
        (&dotted, r#"{"q": {"text": "a"}, "a": "b"}"#, None),
        (
            &dotted,
            r#"{"q.text": "a", "a": "b"}"#,
            Some([None, Some("a"), Some("b"), None]),
        ),
    ];
    for (mapping, line, expected) in cases {
        check(mapping, line, *expected);
    }
}

#[test]
fn only_the_pairs_style_has_a_fast_path() {
    for style in [
        Style::OpenaiChat,
        Style::Alpaca,
        Style::Sharegpt,
        Style::Classification,
        Style::Text,
    ] {
        let mapping = Mapping {
            style,
            fields: Fields::default(),
        };
        assert!(PairNames::new(&mapping).is_none(), "{style:?}");
    }
}

#[test]
fn borrows_text_without_escapes() {
    let qa = mapping(serde_json::json!({"input": "question", "output": "answer"}));
    let names = PairNames::new(&qa).unwrap();
    let pair = names
        .parse(br#"{"question": "plain", "answer": "with \n escape"}"#)
        .unwrap();
    assert!(matches!(pair.input, Cow::Borrowed("plain")));
    assert!(matches!(pair.output, Cow::Owned(_)));
}
