//! `sluice gc`: removes every object and stage record that no lockfile in the workspace
//! references. A `.lock` file beside a `.yaml` workflow that cannot be read stops the collection,
//! so that a damaged lockfile never costs its cache.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::Serialize;
use sluice_lock::Lockfile;
use sluice_store::{Artifact, Digest};

use crate::cli::GcArgs;
use crate::exit;
use crate::report::print_json;
use crate::run::open_locked;
use crate::workspace::find_root;

/// Directories never searched for lockfiles.
const SKIP: &[&str] = &[
    ".sluice",
    ".git",
    "target",
    "node_modules",
    ".venv",
    "__pycache__",
];

/// Every sluice lockfile in the workspace.
pub fn lockfiles(root: &Path) -> Result<Vec<(PathBuf, Lockfile)>> {
    let mut found = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            !(e.file_type().is_dir()
                && e.depth() > 0
                && SKIP.contains(&e.file_name().to_string_lossy().as_ref()))
        });
    for entry in walker.filter_map(Result::ok) {
        let path = entry.path();
        if !entry.file_type().is_file() || path.extension().is_none_or(|e| e != "lock") {
            continue;
        }
        let beside_workflow = ["yaml", "yml"]
            .iter()
            .any(|ext| path.with_extension(ext).is_file());
        match Lockfile::read(path) {
            Ok(Some(lock)) => found.push((path.to_path_buf(), lock)),
            Ok(None) => {}
            Err(e) if beside_workflow => {
                bail!(
                    "{e}\n  = hint: gc stops rather than lose the cache this lockfile refers to; fix or delete it"
                )
            }
            Err(_) => {} // Cargo.lock and friends
        }
    }
    Ok(found)
}

#[derive(Serialize)]
struct Json {
    lockfiles: Vec<String>,
    objects_removed: u64,
    records_removed: u64,
    bytes_freed: u64,
}

pub fn gc(args: GcArgs) -> Result<u8> {
    let cwd = std::env::current_dir()?;
    let root = find_root(&cwd);
    if !root.join(".sluice").is_dir() {
        bail!(
            "no .sluice store in {} or any parent directory: nothing to collect",
            cwd.display()
        );
    }
    let (store, _lock) = open_locked(&root)?;
    let locks = lockfiles(&root)?;
    let mut live: Vec<Artifact> = Vec::new();
    let mut keys: BTreeSet<Digest> = BTreeSet::new();
    for (_, lock) in &locks {
        for stage in lock.stages.values() {
            if let Ok(k) = stage.key.parse() {
                keys.insert(k);
            }
            live.extend(stage.outputs.values().filter_map(sluice_exec::from_locked));
            live.extend(stage.inputs.values().filter_map(sluice_exec::from_locked));
        }
    }
    let report = store.gc(&live, &keys)?;
    let shown: Vec<String> = locks
        .iter()
        .map(|(p, _)| p.strip_prefix(&root).unwrap_or(p).display().to_string())
        .collect();
    if args.json {
        print_json(&Json {
            lockfiles: shown,
            objects_removed: report.objects_removed,
            records_removed: report.records_removed,
            bytes_freed: report.bytes_freed,
        });
    } else {
        println!(
            "removed {} objects and {} stage records, {} freed (kept what {} lockfile{} reference{})",
            report.objects_removed,
            report.records_removed,
            human_bytes(report.bytes_freed),
            locks.len(),
            if locks.len() == 1 { "" } else { "s" },
            if locks.len() == 1 { "s" } else { "" },
        );
    }
    Ok(exit::OK)
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
