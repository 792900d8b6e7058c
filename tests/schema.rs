//! The committed JSON Schema is what `sluice schema` prints, and every bundled pipeline
//! validates against it.

use std::path::Path;

use crate::support::Test;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn committed_schema_is_up_to_date() {
    let printed = Test::new().sluice(&["schema"]).ok().stdout;
    let committed =
        std::fs::read_to_string(repo().join("schemas/pipeline.schema.json")).unwrap_or_default();
    assert!(
        printed == committed,
        "schemas/pipeline.schema.json is stale: regenerate it with `cargo run -- schema > schemas/pipeline.schema.json`"
    );
}

#[test]
fn every_bundled_pipeline_validates_against_the_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("schemas/pipeline.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let mut seen = 0;
    for entry in std::fs::read_dir(repo().join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let doc: serde_json::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        // And sluice itself accepts it.
        let out = std::process::Command::new(crate::support::BIN)
            .args(["validate", path.to_str().unwrap()])
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        seen += 1;
    }
    assert!(seen > 0, "no pipelines found");
}

#[test]
fn the_schema_rejects_what_sluice_rejects() {
    let schema: serde_json::Value =
        serde_json::from_str(&Test::new().sluice(&["schema"]).ok().stdout).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let bad: serde_json::Value =
        serde_yaml::from_str("version: 1\nname: x\nstages:\n  a:\n    rnu: x\n").unwrap();
    assert!(!validator.is_valid(&bad));
    let good: serde_json::Value =
        serde_yaml::from_str("version: 1\nname: x\nstages:\n  a:\n    run: x\n").unwrap();
    assert!(validator.is_valid(&good));
    // A collect source: `path`, or `url` pinned by a digest; sluice says the same (below).
    let digest = "0".repeat(64);
    for (source, valid) in [
        ("{path: a.jsonl}".to_owned(), true),
        (
            format!("{{url: 'https://x/a.jsonl', sha256: '{digest}'}}"),
            true,
        ),
        (
            format!("{{url: 'https://x/a.jsonl', blake3: '{digest}'}}"),
            true,
        ),
        ("{url: 'https://x/a.jsonl'}".to_owned(), false),
        (
            "{path: a.jsonl, url: 'https://x/a.jsonl'}".to_owned(),
            false,
        ),
        (format!("{{path: a.jsonl, sha256: '{digest}'}}"), false),
        ("{format: jsonl}".to_owned(), false),
    ] {
        let workflow = format!(
            "version: 1\nname: x\nstages:\n  a:\n    uses: collect\n    with:\n      sources: [{source}]\n"
        );
        let doc: serde_json::Value = serde_yaml::from_str(&workflow).unwrap();
        assert_eq!(validator.is_valid(&doc), valid, "{source}");
        let t = Test::new();
        t.workflow(&workflow);
        let out = t.sluice(&["validate", "wf.yaml"]);
        assert_eq!(out.code == 0, valid, "{source}: {}", out.stderr);
    }
}

#[test]
fn the_readme_example_workflow_is_valid() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let t = Test::new();
    t.workflow(&readme[start..end]);
    t.sluice(&["validate", "wf.yaml"]).ok();
}
