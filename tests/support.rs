//! A small builder for integration tests: a temp workspace, files in it, and `sluice` runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");

pub struct Test {
    dir: tempfile::TempDir,
}

/// What a sluice invocation left behind.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "sluice failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn fails(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!("not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }

    /// stage name → status, from a `--json` summary.
    pub fn statuses(&self) -> Vec<(String, String)> {
        self.json()["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_owned(),
                    s["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    pub fn status_of(&self, stage: &str) -> String {
        self.statuses()
            .into_iter()
            .find(|(n, _)| n == stage)
            .unwrap_or_else(|| panic!("no stage {stage} in {}", self.stdout))
            .1
    }

    pub fn stderr_has(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    pub fn stdout_has(&self, needle: &str) -> &Run {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}:\n{}",
            self.stdout
        );
        self
    }
}

impl Test {
    pub fn new() -> Test {
        Test {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) -> &Test {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, content).unwrap();
        self
    }

    /// Writes `wf.yaml`.
    pub fn workflow(&self, yaml: &str) -> &Test {
        self.write("wf.yaml", yaml)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.root())
            .env_remove("SLUICE_LOG");
        c
    }

    pub fn sluice(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("spawn sluice"))
    }

    /// `sluice run wf.yaml --json EXTRA…`, which must succeed.
    pub fn run(&self, extra: &[&str]) -> Run {
        let mut args = vec!["run", "wf.yaml", "--json"];
        args.extend_from_slice(extra);
        self.sluice(&args).ok()
    }

    /// Every file under `.sluice/objects`.
    pub fn objects(&self) -> Vec<PathBuf> {
        let dir = self.path(".sluice/objects");
        if !dir.exists() {
            return Vec::new();
        }
        walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| e.into_path())
            .collect()
    }
}

/// Waits up to 20 s for `path` to exist.
pub fn wait_for(path: &Path) {
    for _ in 0..400 {
        if path.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{} never appeared", path.display());
}

/// A three-stage workflow: `prep` reads `data/in.txt`, `upper` and `count` read prep's output.
pub const DIAMOND: &str = r#"version: 1
name: demo
params:
  n: 2
  tag: v1
stages:
  prep:
    run: head -n ${{ params.n }} ${{ inputs.raw }} > ${{ outputs.out }}
    inputs:
      raw: data/in.txt
    outputs:
      out: build/prep.txt
  upper:
    run: tr a-z A-Z < ${{ inputs.text }} > ${{ outputs.out }}
    inputs:
      text: ${{ stages.prep.outputs.out }}
    outputs:
      out: build/upper.txt
  count:
    run: echo ${{ params.tag }} $(wc -l < ${{ stages.prep.outputs.out }}) > ${{ outputs.out }}
    outputs:
      out: build/count.txt
"#;

impl Test {
    /// The DIAMOND workflow with its input.
    pub fn diamond() -> Test {
        let t = Test::new();
        t.write("data/in.txt", "alpha\nbeta\ngamma\n")
            .workflow(DIAMOND);
        t
    }
}
