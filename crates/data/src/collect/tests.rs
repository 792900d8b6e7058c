use serde_json::json;

use super::*;
use crate::testing::{Workspace, inputs, write_rows};

fn collect(ws: &Workspace, with: serde_json::Value) -> crate::testing::Run {
    ws.run(&Collect, "collect", with).unwrap()
}

fn collect_err(ws: &Workspace, with: serde_json::Value) -> String {
    match ws.run(&Collect, "collect", with) {
        Ok(_) => panic!("collect succeeded"),
        Err(e) => e.to_string(),
    }
}

const QA: &str = r#"{"question": "How do I reset my password?", "answer": "Use the link."}
{"question": "Where is my order?", "answer": "On its way.", "id": "q2"}
"#;

#[test]
fn jsonl_with_field_mapping() {
    let ws = Workspace::new();
    ws.write("data/qa.jsonl", QA);
    let run = collect(
        &ws,
        json!({"sources": [{"path": "data/qa.jsonl"}], "fields": {"input": "question", "output": "answer"}}),
    );
    let rows = run.rows("data");
    assert_eq!(
        inputs(&rows),
        ["How do I reset my password?", "Where is my order?"]
    );
    assert_eq!(rows[0].output, "Use the link.");
    assert_eq!(rows[0].source, "data/qa.jsonl");
    assert_eq!(rows[0].source_row, 1);
    assert_eq!(rows[0].id, crate::short_id("data/qa.jsonl\n1"));
    assert_eq!(rows[0].id.len(), 16);
    assert_eq!(rows[1].id, "q2");
    assert_eq!(rows[1].source_row, 2);
    assert_eq!(run.metric("rows_out"), 2.0);
    assert_eq!(run.stats()["rows_out"], 2);
}

#[test]
fn json_csv_text_and_parquet_sources() {
    let ws = Workspace::new();
    ws.write(
        "data/a.json",
        r#"[{"input": "j1", "output": "o1"}, {"input": "j2", "output": "o2", "label": 3}]"#,
    );
    ws.write(
        "data/b.csv",
        "input,output,extra\nc1,\"o, with comma\",x\n\"multi\nline\",o2,y\n",
    );
    ws.write("data/c.txt", "first line\n\n  second line  \n");
    ws.write("data/docs/d1.md", "# Doc one\n\nbody\n");
    let mut parquet = crate::testing::rows(2);
    parquet[1].label = Some("L".into());
    write_rows(&ws, "data/e.parquet", &parquet);

    let run = collect(
        &ws,
        json!({"sources": [
            {"path": "data/a.json"},
            {"path": "data/b.csv"},
            {"path": "data/c.txt"},
            {"path": "data/docs/*.md", "text_mode": "file"},
            {"path": "data/e.parquet"},
        ]}),
    );
    let rows = run.rows("data");
    assert_eq!(
        inputs(&rows),
        [
            "j1",
            "j2",
            "c1",
            "multi\nline",
            "first line",
            "second line",
            "# Doc one\n\nbody",
            "input 0",
            "input 1"
        ]
    );
    assert_eq!(rows[1].label.as_deref(), Some("3"));
    assert_eq!(rows[2].output, "o, with comma");
    assert_eq!(
        (rows[3].source.as_str(), rows[3].source_row),
        ("data/b.csv", 2)
    );
    assert_eq!(
        (rows[5].source.as_str(), rows[5].source_row),
        ("data/c.txt", 3)
    );
    assert_eq!(rows[5].output, "");
    assert_eq!(rows[6].source, "data/docs/d1.md");
    // A Parquet file in the example schema keeps its ids and labels.
    assert_eq!(rows[7].id, "r0");
    assert_eq!(rows[8].label.as_deref(), Some("L"));
    assert_eq!(run.stats()["sources"].as_array().unwrap().len(), 5);
}

#[test]
fn chat_alpaca_sharegpt_and_classification_styles() {
    let ws = Workspace::new();
    ws.write(
        "data/chat.jsonl",
        concat!(
            r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}"#,
            "\n"
        ),
    );
    ws.write(
        "data/alpaca.json",
        r#"[{"instruction": "Add", "input": "2 and 2", "output": "4"}]"#,
    );
    ws.write(
        "data/share.jsonl",
        r#"{"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}, {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"}]}"#,
    );
    ws.write("data/labels.csv", "text,label\ngreat service,positive\n");
    let run = collect(
        &ws,
        json!({"sources": [
            {"path": "data/chat.jsonl", "style": "openai-chat"},
            {"path": "data/alpaca.json", "style": "alpaca"},
            {"path": "data/share.jsonl", "style": "sharegpt"},
            {"path": "data/labels.csv", "style": "classification"},
        ]}),
    );
    let rows = run.rows("data");
    assert_eq!(rows[0].input, "system: Be brief.\nuser: Hi");
    assert_eq!(rows[0].output, "Hello!");
    assert_eq!(rows[0].messages.as_ref().unwrap().len(), 3);
    assert_eq!(rows[1].input, "Add\n\n2 and 2");
    assert_eq!(rows[1].output, "4");
    assert_eq!(rows[2].input, "user: Q\nassistant: A\nuser: Q2");
    assert_eq!(rows[2].output, "A2");
    assert_eq!(rows[2].messages.as_ref().unwrap()[1].role, "assistant");
    assert_eq!(rows[3].input, "great service");
    assert_eq!(rows[3].output, "positive");
    assert_eq!(rows[3].label.as_deref(), Some("positive"));
    assert!(rows[3].messages.is_none());
}

const BAD: &str = r#"{"input": "a", "output": "b"}
{"input": "broken", "output":
["not", "an", "object"]
{"input": "c", "output": "d"}
{"output": "no input"}
"#;

#[test]
fn malformed_line_stops_with_file_and_line() {
    let ws = Workspace::new();
    ws.write("data/bad.jsonl", BAD);
    let err = collect_err(&ws, json!({"sources": [{"path": "data/bad.jsonl"}]}));
    assert!(
        err.starts_with("data/bad.jsonl:2: malformed JSON: EOF while parsing a value at column"),
        "{err}"
    );
}

#[test]
fn malformed_lines_are_skipped_and_counted() {
    let ws = Workspace::new();
    ws.write("data/bad.jsonl", BAD);
    let run = collect(
        &ws,
        json!({"sources": [{"path": "data/bad.jsonl"}], "on_error": "skip"}),
    );
    assert_eq!(inputs(&run.rows("data")), ["a", "c"]);
    let stats = run.stats();
    assert_eq!(stats["rows_in"], 5);
    assert_eq!(stats["rows_out"], 2);
    assert_eq!(stats["skipped"], 3);
    assert_eq!(run.rule("skip_malformed"), 2);
    assert_eq!(run.rule("skip_missing_field"), 1);
    assert_eq!(run.metric("skipped"), 3.0);
    assert_eq!(stats["sources"][0]["skipped"], 3);
}

#[test]
fn tsv_sources_by_extension_or_format() {
    let ws = Workspace::new();
    ws.write(
        "data/a.tsv",
        "question\tanswer\nq1\ta, with comma\n\"q\t2\"\t\"a2\"\n",
    );
    ws.write("data/b.txt", "question\tanswer\nq3\ta3\n");
    let run = collect(
        &ws,
        json!({
            "sources": [{"path": "data/a.tsv"}, {"path": "data/b.txt", "format": "tsv"}],
            "fields": {"input": "question", "output": "answer"},
        }),
    );
    let rows = run.rows("data");
    assert_eq!(inputs(&rows), ["q1", "q\t2", "q3"]);
    assert_eq!(rows[0].output, "a, with comma");
    ws.write("data/c.tsv", "input\toutput\na\tb\tc\n");
    let err = collect_err(&ws, json!({"sources": [{"path": "data/c.tsv"}]}));
    assert_eq!(
        err,
        "data/c.tsv:2: malformed TSV record: 3 fields, the header has 2"
    );
}

#[test]
fn gzip_and_zstd_sources_are_decompressed() {
    use std::io::Write;
    let gzip = |text: &str| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let ws = Workspace::new();
    // Two gzip members one after the other, as `cat a.gz b.gz` makes.
    let mut members = gzip("{\"question\": \"q1\", \"answer\": \"a1\"}\n");
    members.extend(gzip("{\"question\": \"q2\", \"answer\": \"a2\"}\n"));
    ws.write("data/a.jsonl.gz", members);
    let csv = zstd::encode_all("question,answer\nq3,a3\n".as_bytes(), 3).unwrap();
    ws.write("data/b.csv.zst", csv);
    ws.write("data/c.txt.gz", gzip("plain line\n"));
    let run = collect(
        &ws,
        json!({
            "sources": [{"path": "data/*.jsonl.gz"}, {"path": "data/b.csv.zst"}, {"path": "data/c.txt.gz"}],
            "fields": {"input": "question", "output": "answer"},
        }),
    );
    assert_eq!(inputs(&run.rows("data")), ["q1", "q2", "q3", "plain line"]);
    assert_eq!(
        run.rows("data")[1].source_row,
        2,
        "lines count in the decompressed text"
    );

    let mut broken = gzip("{\"question\": \"q\", \"answer\": \"a\"}\n");
    broken.truncate(broken.len() / 2);
    ws.write("data/d.jsonl.gz", broken);
    let err = collect_err(&ws, json!({"sources": [{"path": "data/d.jsonl.gz"}]}));
    assert!(err.starts_with("data/d.jsonl.gz: not valid gzip"), "{err}");
}

#[test]
fn formats_are_inferred_through_a_compression_suffix() {
    use crate::format::Format;
    assert_eq!(Format::infer("a.jsonl.gz"), Some(Format::Jsonl));
    assert_eq!(Format::infer("a.CSV.ZST"), Some(Format::Csv));
    assert_eq!(Format::infer("a.tsv.zstd"), Some(Format::Tsv));
    assert_eq!(Format::infer("a.gz"), None);
    assert_eq!(Format::infer("a.parquet.gz"), None);
    assert_eq!(Format::infer("a.parquet"), Some(Format::Parquet));
}

#[test]
fn json_records_under_a_key() {
    let ws = Workspace::new();
    ws.write(
        "data/squad.json",
        r#"{"version": "1.1", "data": {"rows": [{"q": "q1", "a": "a1"}, {"q": "q2", "a": "a2"}]}}"#,
    );
    ws.write(
        "data/flat.json",
        r#"{"version": 2, "items": [{"q": "x", "a": "y"}]}"#,
    );
    let fields = json!({"input": "q", "output": "a"});
    let run = collect(
        &ws,
        json!({"sources": [{"path": "data/squad.json", "records": "data.rows"}], "fields": fields}),
    );
    assert_eq!(inputs(&run.rows("data")), ["q1", "q2"]);
    assert_eq!(run.rows("data")[1].source_row, 2);
    // Without `records`, the error names the key that holds an array.
    let err = collect_err(
        &ws,
        json!({"sources": [{"path": "data/flat.json"}], "fields": fields}),
    );
    assert_eq!(
        err,
        "data/flat.json: expected a JSON array of objects, found an object; set `records: items` on the source to read the array under `items`"
    );
    let err = collect_err(
        &ws,
        json!({"sources": [{"path": "data/squad.json", "records": "data.cols"}], "fields": fields}),
    );
    assert_eq!(
        err,
        "data/squad.json: no `data.cols` for `records`; the object there has `rows`"
    );
    // Only JSON files have records under a key.
    let errors = Collect.check(&json!({"sources": [{"path": "data/a.jsonl", "records": "data"}]}));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, ["sources", "0", "records"]);
}

#[test]
fn malformed_csv_record_names_its_line() {
    let ws = Workspace::new();
    ws.write("data/a.csv", "input,output\na,b\nc,d,e\nf,g\n");
    let err = collect_err(&ws, json!({"sources": [{"path": "data/a.csv"}]}));
    assert_eq!(
        err,
        "data/a.csv:3: malformed CSV record: 3 fields, the header has 2"
    );
    let run = collect(
        &ws,
        json!({"sources": [{"path": "data/a.csv"}], "on_error": "skip"}),
    );
    assert_eq!(inputs(&run.rows("data")), ["a", "f"]);
}

#[test]
fn missing_field_lists_the_columns_that_exist() {
    let ws = Workspace::new();
    ws.write("data/qa.jsonl", QA);
    let err = collect_err(
        &ws,
        json!({"sources": [{"path": "data/qa.jsonl"}], "fields": {"input": "prompt", "output": "answer"}}),
    );
    assert_eq!(
        err,
        "data/qa.jsonl:1: no field `prompt` (for `input`); the record has `answer`, `question`"
    );
    // Skipping cannot hide a mapping that matches no record at all.
    let err = collect_err(
        &ws,
        json!({"sources": [{"path": "data/qa.jsonl"}], "fields": {"input": "prompt", "output": "answer"}, "on_error": "skip"}),
    );
    assert!(
        err.ends_with("(no record of data/qa.jsonl has it)"),
        "{err}"
    );
}

#[test]
fn globs_expand_sorted_and_are_what_it_reads() {
    let ws = Workspace::new();
    ws.write("data/b.jsonl", r#"{"input": "b", "output": "o"}"#);
    ws.write("data/a.jsonl", r#"{"input": "a", "output": "o"}"#);
    ws.write("data/.hidden.jsonl", r#"{"input": "h", "output": "o"}"#);
    ws.write("data/notes.txt", "not matched");
    let with = json!({"sources": [{"path": "data/*.jsonl"}]});
    assert_eq!(
        Collect.reads(&with, ws.root()).unwrap(),
        ["data/a.jsonl", "data/b.jsonl"]
    );
    let run = collect(&ws, with);
    assert_eq!(inputs(&run.rows("data")), ["a", "b"]);

    let err = Collect
        .reads(&json!({"sources": [{"path": "data/*.csv"}]}), ws.root())
        .unwrap_err();
    assert_eq!(err.to_string(), "no files match `data/*.csv`");
    let err = Collect
        .reads(
            &json!({"sources": [{"path": "data/missing.jsonl"}]}),
            ws.root(),
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "source `data/missing.jsonl` not found");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn file_urls_are_verified() {
    let ws = Workspace::new();
    ws.write("remote/qa.jsonl", QA);
    let url = format!("file://{}/remote/qa.jsonl", ws.root().display());
    let good = sha256_hex(QA.as_bytes());
    let run = collect(
        &ws,
        json!({"sources": [{"url": url, "sha256": good}], "fields": {"input": "question", "output": "answer"}}),
    );
    let rows = run.rows("data");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].source, url);

    let wrong = blake3::hash(b"something else").to_hex().to_string();
    let err = collect_err(&ws, json!({"sources": [{"url": url, "blake3": wrong}]}));
    let actual = blake3::hash(QA.as_bytes()).to_hex().to_string();
    assert_eq!(
        err,
        format!("{url}: blake3 mismatch: the workflow pins {wrong}, the download has {actual}")
    );
}

#[cfg(feature = "url")]
#[test]
fn http_urls_are_downloaded_once_and_verified() {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        // Two requests: the good download (cached afterwards) and the mismatching one.
        for _ in 0..2 {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).unwrap();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{QA}",
                QA.len()
            );
            stream.write_all(response.as_bytes()).unwrap();
        }
    });
    let ws = Workspace::new();
    let url = format!("http://127.0.0.1:{port}/qa.jsonl?v=1");
    let with = json!({"sources": [{"url": url, "sha256": sha256_hex(QA.as_bytes())}], "fields": {"input": "question", "output": "answer"}});
    assert_eq!(collect(&ws, with.clone()).rows("data").len(), 2);
    // The second run reads the verified download without asking the server.
    assert_eq!(collect(&ws, with).rows("data").len(), 2);

    let wrong = "0".repeat(64);
    let err = collect_err(&ws, json!({"sources": [{"url": url, "sha256": wrong}]}));
    assert!(err.contains("sha256 mismatch"), "{err}");
    server.join().unwrap();
    let downloads: Vec<_> = std::fs::read_dir(ws.root().join(".sluice/work/collect/downloads"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(downloads, [format!("sha256-{}", sha256_hex(QA.as_bytes()))]);
}

#[test]
fn same_input_gives_the_same_bytes() {
    let ws = Workspace::new();
    ws.write("data/qa.jsonl", QA);
    let with = json!({"sources": [{"path": "data/qa.jsonl"}], "fields": {"input": "question", "output": "answer"}});
    let first = collect(&ws, with.clone());
    let (data, stats) = (first.bytes("data"), first.bytes("stats"));
    let second = collect(&ws, with);
    assert_eq!(data, second.bytes("data"));
    assert_eq!(stats, second.bytes("stats"));
    assert!(String::from_utf8(stats).unwrap().ends_with("}\n"));
}

fn check(with: serde_json::Value, expected: &[(&[&str], &str, Option<&str>)]) {
    let errors = Collect.check(&with);
    let got: Vec<(Vec<String>, String, Option<String>)> = errors
        .into_iter()
        .map(|e| (e.path, e.message, e.hint))
        .collect();
    let expected: Vec<(Vec<String>, String, Option<String>)> = expected
        .iter()
        .map(|(p, m, h)| {
            (
                p.iter().map(|s| s.to_string()).collect(),
                m.to_string(),
                h.map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn option_errors() {
    check(json!({"sources": [{"path": "data/a.jsonl"}]}), &[]);
    check(
        json!({"sources": [{"path": "a.jsonl", "fromat": "csv"}]}),
        &[(
            &["sources", "0", "fromat"],
            "unknown option `fromat`",
            Some("did you mean `format`?"),
        )],
    );
    check(
        json!({"sources": [{"path": "a.jsonl"}], "style": "openai"}),
        &[(
            &["style"],
            "unknown value `openai`",
            Some("did you mean `openai-chat`?"),
        )],
    );
    check(
        json!({"sources": [{"path": "a.jsonl"}], "on_error": "ignore"}),
        &[(
            &["on_error"],
            "unknown value `ignore`",
            Some("valid values: `fail`, `skip`"),
        )],
    );
    check(
        json!({"source": []}),
        &[(
            &["source"],
            "unknown option `source`",
            Some("did you mean `sources`?"),
        )],
    );
    check(
        json!({"sources": [{"url": "https://example.com/a.jsonl"}]}),
        &[(
            &["sources", "0", "url"],
            "a URL source must be pinned by a digest",
            Some("add `sha256: <64 hex digits>` (or `blake3:`)"),
        )],
    );
    check(
        json!({"sources": [{"url": "ftp://x/a.jsonl", "sha256": "abc"}, {"path": "/etc/a.csv"}, {"path": "a.xyz"}, {}]}),
        &[
            (
                &["sources", "0", "url"],
                "`ftp://x/a.jsonl` is not an https://, http:// or file:// URL",
                None,
            ),
            (
                &["sources", "0", "sha256"],
                "`abc` is not 64 hex digits",
                None,
            ),
            (
                &["sources", "1", "path"],
                "`/etc/a.csv` is absolute",
                Some("paths are relative to the workspace root"),
            ),
            (
                &["sources", "2", "format"],
                "cannot tell the format of `a.xyz`",
                Some("set `format: jsonl` (or json, csv, tsv, parquet, text)"),
            ),
            (
                &["sources", "3"],
                "a source needs `path` or `url`",
                Some("add `path: data/train.jsonl`"),
            ),
        ],
    );
    check(
        json!({"sources": [], "fields": {"inptu": "q"}}),
        &[(
            &["fields", "inptu"],
            "unknown option `inptu`",
            Some("did you mean `input`?"),
        )],
    );
    check(
        json!({"sources": []}),
        &[(
            &["sources"],
            "no sources",
            Some("add one, like `- path: data/train.jsonl`"),
        )],
    );
}

#[test]
fn schema_documents_every_option() {
    let schema = Collect.schema();
    let text = serde_json::to_string(&schema).unwrap();
    for key in [
        "sources",
        "style",
        "fields",
        "on_error",
        "text_mode",
        "sha256",
        "openai-chat",
    ] {
        assert!(text.contains(key), "{key} missing from the schema");
    }
    assert!(schema["properties"]["sources"]["description"].is_string());
}

/// JSON Lines in the `pairs` style go through a fast path (`crate::pairs`) where they can; a
/// JSON array of the same records always goes through the general one. Both give the same rows,
/// whatever mix of plain and unusual records a file has.
#[test]
fn jsonl_fast_path_gives_the_rows_of_the_general_path() {
    let records = [
        json!({"id": "a", "q": "plain", "a": "text", "label": "x"}),
        json!({"id": 7, "q": "a number as id", "a": "text"}),
        json!({"id": "", "q": "an empty id", "a": "text"}),
        json!({"q": "no id, escapes \"\n\t\u{e9}", "a": "caf\u{e9}", "label": null}),
        json!({"id": "c", "q": "a number as answer", "a": 2.5, "label": true}),
        json!({"id": "d", "q": "nested", "a": "text", "extra": {"deep": [1, "two", null]}}),
    ];
    let ws = Workspace::new();
    let lines: Vec<String> = records.iter().map(|r| r.to_string()).collect();
    ws.write("data/a.jsonl", lines.join("\n") + "\n");
    ws.write("data/a.json", serde_json::to_string(&records).unwrap());
    let fields = json!({"input": "q", "output": "a"});
    let rows = |file: &str| {
        let mut rows =
            collect(&ws, json!({"sources": [{"path": file}], "fields": fields})).rows("data");
        for row in &mut rows {
            assert_eq!(row.source, file);
            row.source.clear();
            // Derived ids name the source file.
            if row.id == crate::short_id(&format!("{file}\n{}", row.source_row)) {
                row.id = "derived".into();
            }
        }
        rows
    };
    let fast = rows("data/a.jsonl");
    assert_eq!(fast, rows("data/a.json"));
    assert_eq!(fast.len(), records.len());
    assert_eq!(fast[0].label.as_deref(), Some("x"));
    assert_eq!(fast[1].id, "7");
    assert_eq!(fast[2].id, "derived");
    assert_eq!(fast[3].input, "no id, escapes \"\n\t\u{e9}");
    assert_eq!(fast[4].output, "2.5");
    assert_eq!(fast[4].label.as_deref(), Some("true"));
}
