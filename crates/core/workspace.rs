//! Finding the workspace (the nearest directory upward holding `.sluice/`, as git finds `.git`,
//! else the current directory) and loading a workflow file into a plan.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sluice_plan::Plan;
use sluice_spec::ParamOverride;

use crate::exit::Failure;

/// Where the quickstart lives, relative to the workspace root.
pub const DEFAULT_WORKFLOW: &str = "pipelines/quickstart.yaml";

/// The workspace root for `cwd`.
pub fn find_root(cwd: &Path) -> PathBuf {
    cwd.ancestors()
        .find(|d| d.join(".sluice").is_dir())
        .unwrap_or(cwd)
        .to_path_buf()
}

/// A workflow file located and compiled.
pub struct Loaded {
    pub root: PathBuf,
    /// The workflow file, as the user named it (used in messages).
    pub shown: PathBuf,
    /// The workflow file, absolute.
    pub file: PathBuf,
    pub plan: Plan,
}

impl Loaded {
    pub fn lock_path(&self) -> PathBuf {
        sluice_lock::path_for(&self.file)
    }

    pub fn lock_shown(&self) -> PathBuf {
        sluice_lock::path_for(&self.shown)
    }
}

/// Locates the workflow file (the default when none is given) and returns its path as shown
/// and as an absolute path.
pub fn locate(file: Option<&Path>) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let root = find_root(&cwd);
    let (shown, full) = match file {
        Some(f) => (f.to_path_buf(), cwd.join(f)),
        None => {
            let full = root.join(DEFAULT_WORKFLOW);
            if !full.is_file() {
                bail!(
                    "no workflow file given, and {DEFAULT_WORKFLOW} does not exist in the workspace ({})",
                    root.display()
                );
            }
            let shown = full
                .strip_prefix(&cwd)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| full.clone());
            (shown, full)
        }
    };
    Ok((root, shown, full))
}

/// Reads, validates and plans a workflow file.
pub fn load(file: Option<&Path>, params: &[ParamOverride]) -> Result<Loaded> {
    let (root, shown, full) = locate(file)?;
    let source = match std::fs::read_to_string(&full) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("workflow file {} does not exist", shown.display())
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read workflow file {}", shown.display()));
        }
    };
    let wf = sluice_spec::load(&shown, &source, params).map_err(Failure::Spec)?;
    let plan = Plan::new(wf).map_err(Failure::Spec)?;
    Ok(Loaded {
        root,
        shown,
        file: full,
        plan,
    })
}
