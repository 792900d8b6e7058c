//! Finding the workspace (the nearest directory upward holding `.sluice/`, as git finds `.git`,
//! else the current directory) and loading a workflow file into a plan.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sluice_plan::Plan;
use sluice_spec::ParamOverride;
use sluice_store::Store;

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

/// The workspace root for the current directory.
pub fn current_root() -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    Ok(find_root(&cwd))
}

/// Identifies this build of sluice in memo keys, so that a rebuilt binary never trusts what an
/// older one parsed.
fn build_id() -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| std::fs::metadata(p).ok())
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{}:{exe}", env!("CARGO_PKG_VERSION"))
}

/// The memo key of a pure function of `parts`.
pub fn memo_key(kind: &str, parts: &[&[u8]]) -> sluice_store::Digest {
    let mut h = blake3::Hasher::new();
    h.update(kind.as_bytes());
    h.update(build_id().as_bytes());
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    sluice_store::Digest::from_hasher(&h)
}

/// Parses and validates a workflow, or takes the result from the store's memo when this exact
/// text (with these overrides) was validated before: parsing YAML dominates a no-op `status`.
fn resolve(
    shown: &Path,
    source: &str,
    params: &[ParamOverride],
    memo: Option<&Store>,
) -> Result<sluice_spec::ResolvedWorkflow> {
    let overrides: Vec<String> = params
        .iter()
        .map(|p| format!("{}={}", p.name, p.value))
        .collect();
    let overrides = overrides.join("\n");
    let key = memo_key(
        "workflow",
        &[
            shown.to_string_lossy().as_bytes(),
            source.as_bytes(),
            overrides.as_bytes(),
        ],
    );
    if let Some(store) = memo
        && let Ok(Some(bytes)) = store.memo(&key)
        && let Ok(wf) = serde_json::from_slice(&bytes)
    {
        return Ok(wf);
    }
    let catalog = crate::catalog::catalog();
    let wf = sluice_spec::load(
        shown,
        source,
        params,
        &crate::catalog::CatalogKinds(&catalog),
    )
    .map_err(Failure::Spec)?;
    if let Some(store) = memo
        && let Ok(bytes) = serde_json::to_vec(&wf)
    {
        let _ = store.put_memo(&key, &bytes);
    }
    Ok(wf)
}

/// Reads, validates and plans a workflow file; `memo` is the store to remember the result in.
pub fn load(file: Option<&Path>, params: &[ParamOverride], memo: Option<&Store>) -> Result<Loaded> {
    let (_, shown, full) = locate(file)?;
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
    let wf = resolve(&shown, &source, params, memo)?;
    let plan = Plan::new(wf).map_err(Failure::Spec)?;
    Ok(Loaded {
        shown,
        file: full,
        plan,
    })
}
