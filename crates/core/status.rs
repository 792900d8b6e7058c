//! `sluice status` and `sluice run --dry-run`: what a run would do, and why.

use anyhow::Result;
use serde::Serialize;
use sluice_exec::{Freshness, StageState, StatusReport};

use crate::cli::StatusArgs;
use crate::exit;
use crate::report::print_json;
use crate::run::{open_locked, read_lockfile};
use crate::workspace::{Loaded, load};

#[derive(Serialize)]
struct Json<'a> {
    workflow: &'a str,
    up_to_date: bool,
    stages: &'a [StageState],
    #[serde(skip_serializing_if = "Option::is_none")]
    hashed: Option<sluice_store::HashStats>,
}

pub fn status(args: StatusArgs) -> Result<u8> {
    let (store, _lock) = open_locked(&crate::workspace::current_root()?)?;
    let loaded = load(
        args.workflow.file.as_deref(),
        &args.workflow.params,
        Some(&store),
    )?;
    let previous = read_lockfile(&loaded, &store)?;
    let report = sluice_exec::status(
        &loaded.plan,
        &store,
        previous.as_ref(),
        &crate::catalog::catalog(),
    )?;
    store.flush()?;
    if args.json {
        print_json(&Json {
            workflow: &loaded.plan.workflow.name,
            up_to_date: report.is_fresh(),
            stages: &report.stages,
            hashed: Some(store.hash_stats()),
        });
        return Ok(exit::OK);
    }
    let width = report
        .stages
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0);
    for s in &report.stages {
        let word = match s.status {
            Freshness::Cached => "cached",
            Freshness::Stale => "stale",
        };
        println!("{word:<7} {:<width$} {}", s.name, s.reasons.join("; "));
    }
    let stale = report
        .stages
        .iter()
        .filter(|s| s.status == Freshness::Stale)
        .count();
    if stale == 0 {
        println!("everything is up to date");
    } else {
        println!("{stale} of {} stages would run", report.stages.len());
    }
    Ok(exit::OK)
}

/// The plan of `run --dry-run`.
pub fn print_plan(loaded: &Loaded, report: &StatusReport, json: bool) {
    if json {
        print_json(&Json {
            workflow: &loaded.plan.workflow.name,
            up_to_date: report.is_fresh(),
            stages: &report.stages,
            hashed: None,
        });
        return;
    }
    let width = report
        .stages
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0);
    println!(
        "plan for {} (dry run, nothing is executed):",
        loaded.shown.display()
    );
    for s in &report.stages {
        let stage = loaded.plan.stages().iter().find(|x| x.name == s.name);
        match s.status {
            Freshness::Cached => println!("  cached   {:<width$}", s.name),
            Freshness::Stale => {
                println!("  run      {:<width$} {}", s.name, s.reasons.join("; "));
                if let Some(stage) = stage {
                    println!(
                        "  {:<8} {:<width$} $ {}",
                        "",
                        "",
                        stage.command.lines().next().unwrap_or("")
                    );
                }
            }
        }
    }
}
