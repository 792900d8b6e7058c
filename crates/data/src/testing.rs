//! A test workspace: source files in a temp dir, and stages run on them through a real
//! [`StageContext`], as the engine would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use sluice_stage::{Device, StageContext, StageError, StageKind, StageReport};

use crate::schema::Example;

pub struct Workspace {
    dir: tempfile::TempDir,
}

/// What a stage run left behind.
pub struct Run {
    pub report: StageReport,
    /// Output name → workspace-relative path.
    pub outputs: BTreeMap<String, String>,
    root: PathBuf,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> &Workspace {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        self
    }

    /// Checks `with` (panicking on option errors) and runs the stage named `stage`.
    pub fn run(
        &self,
        kind: &dyn StageKind,
        stage: &str,
        with: serde_json::Value,
    ) -> Result<Run, StageError> {
        let errors = kind.check(&with);
        assert!(errors.is_empty(), "options rejected: {errors:?}");
        let root = self.dir.path().to_path_buf();
        let mut outputs = BTreeMap::new();
        let mut absolute = BTreeMap::new();
        for spec in kind.outputs() {
            let rel = format!("build/{stage}/{}", spec.file);
            let path = root.join(&rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let _ = std::fs::remove_file(&path);
            outputs.insert(spec.name.to_owned(), rel);
            absolute.insert(spec.name.to_owned(), path);
        }
        let work_dir = root.join(".sluice/work").join(stage);
        std::fs::create_dir_all(&work_dir).unwrap();
        let cancelled = AtomicBool::new(false);
        let progress = |_: &str| {};
        let ctx = StageContext {
            stage,
            key: "0000000000000000",
            workspace: &root,
            with: &with,
            outputs: &absolute,
            work_dir: &work_dir,
            device: &Device::Cpu,
            progress: &progress,
            cancelled: &cancelled,
        };
        let report = kind.run(&ctx)?;
        for (name, path) in &absolute {
            assert!(path.exists(), "output `{name}` was not written");
        }
        Ok(Run {
            report,
            outputs,
            root,
        })
    }
}

impl Run {
    pub fn path(&self, output: &str) -> &str {
        &self.outputs[output]
    }

    pub fn bytes(&self, output: &str) -> Vec<u8> {
        std::fs::read(self.root.join(self.path(output))).unwrap()
    }

    pub fn rows(&self, output: &str) -> Vec<Example> {
        let rel = self.path(output);
        crate::parquet::read_examples(&self.root.join(rel), rel).unwrap()
    }

    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes("stats")).unwrap()
    }

    pub fn metric(&self, name: &str) -> f64 {
        self.report.metrics[name]
    }

    /// How many rows a rule of `stats.json` removed, changed or added.
    pub fn rule(&self, rule: &str) -> u64 {
        let stats = self.stats();
        let found = stats["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["rule"] == rule)
            .unwrap_or_else(|| panic!("no rule `{rule}` in {stats:#}"));
        ["removed", "changed", "added"]
            .iter()
            .find_map(|k| found[*k].as_u64())
            .unwrap()
    }
}

/// The inputs of some rows, for compact assertions.
pub fn inputs(rows: &[Example]) -> Vec<&str> {
    rows.iter().map(|r| r.input.as_str()).collect()
}

/// Writes rows as a Parquet file in the workspace.
pub fn write_rows(ws: &Workspace, rel: &str, rows: &[Example]) {
    let path = ws.root().join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    crate::parquet::write_examples(&path, rows).unwrap();
}

/// Simple rows `input i` / `output i` with ids `r{i}`.
pub fn rows(n: usize) -> Vec<Example> {
    (0..n)
        .map(|i| Example {
            id: format!("r{i}"),
            input: format!("input {i}"),
            output: format!("output {i}"),
            source: "data/x.jsonl".into(),
            source_row: i as u64 + 1,
            ..Example::default()
        })
        .collect()
}
