//! Property tests: the parser and validator return an error, never a panic, on any input —
//! arbitrary text, and valid workflows with bytes inserted, deleted or replaced.

use std::path::Path;

use proptest::prelude::*;
use sluice_spec::{NoKinds, ParamOverride, load};

const VALID: &str = r#"version: 1
name: demo
params:
  n: 2
  lr: 3.0e-4
  tags: [a, b]
stages:
  prep:
    desc: first
    run: head -n ${{ params.n }} ${{ inputs.raw }} > ${{ outputs.out }}
    inputs:
      raw: data/in.txt
    outputs:
      out: build/prep.txt
  train:
    run: train --lr ${{ params.lr }} ${{ stages.prep.outputs.out }} > ${{ outputs.model }}
    env:
      SEED: "7"
    inputs:
      data: ${{ stages.prep.outputs.out }}
    outputs:
      model: build/model.bin
"#;

/// Every error must carry a position inside the file (or line 0 for file-level problems).
fn check(src: &str, overrides: &[ParamOverride]) {
    if let Err(errors) = load(Path::new("w.yaml"), src, overrides, &NoKinds) {
        assert!(!errors.errors().is_empty());
        // YAML counts `\r`, `\n` and `\r\n` as line breaks; an error may sit just past the end.
        let lines = src.matches(['\n', '\r']).count() + 2;
        for e in errors.errors() {
            assert!(e.pos.line <= lines, "{e} (file has {lines} lines)");
            let _ = e.to_string();
        }
    }
}

#[test]
fn the_valid_workflow_is_valid() {
    let wf = load(Path::new("w.yaml"), VALID, &[], &NoKinds).expect("valid");
    assert_eq!(wf.stages.len(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text(src in ".{0,200}") {
        check(&src, &[]);
    }

    #[test]
    fn yaml_shaped_text(src in "([a-z${}:. \\-\\[\\]\n]|params|stages|run|outputs|inputs|version: 1\n){0,60}") {
        check(&src, &[]);
    }

    #[test]
    fn mutated_valid_workflow(edits in proptest::collection::vec((0usize..2000, 0u8..3, any::<char>()), 1..6)) {
        let mut chars: Vec<char> = VALID.chars().collect();
        for (at, op, c) in edits {
            let i = at % (chars.len() + 1);
            match op {
                0 => chars.insert(i, c),
                1 if i < chars.len() => { chars.remove(i); }
                _ if i < chars.len() => chars[i] = c,
                _ => {}
            }
        }
        let src: String = chars.into_iter().collect();
        check(&src, &[]);
    }

    #[test]
    fn arbitrary_overrides(name in "[a-z]{1,4}", value in ".{0,20}") {
        check(VALID, &[ParamOverride { name, value }]);
    }
}
