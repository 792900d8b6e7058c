//! `sluice deployments`: the bundles under `deployments/`, with their headline metrics.

use anyhow::Result;
use serde::Serialize;
use sluice_model::deploy::{self, Deployment};

use crate::cli::DeploymentsArgs;
use crate::exit;
use crate::report::print_json;
use crate::workspace::current_root;

/// The metrics shown in the table, in this order, where a bundle has them.
const HEADLINE: [&str; 7] = [
    "exact_match",
    "f1",
    "rouge_l",
    "accuracy",
    "macro_f1",
    "loss",
    "perplexity",
];

#[derive(Serialize)]
struct Listed<'a> {
    /// Workspace-relative.
    path: String,
    #[serde(flatten)]
    deployment: &'a Deployment,
}

pub fn deployments(args: DeploymentsArgs) -> Result<u8> {
    let root = current_root()?;
    let bundles = deploy::list(&root)?;
    let rel = |p: &std::path::Path| {
        p.strip_prefix(&root)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    if args.json {
        let listed: Vec<Listed<'_>> = bundles
            .iter()
            .map(|(p, d)| Listed {
                path: rel(p),
                deployment: d,
            })
            .collect();
        print_json(&listed);
        return Ok(exit::OK);
    }
    if bundles.is_empty() {
        eprintln!("no deployments under {}/", deploy::DEPLOYMENTS);
        return Ok(exit::OK);
    }
    let rows: Vec<[String; 5]> = bundles
        .iter()
        .map(|(_, d)| {
            let metrics: Vec<String> = HEADLINE
                .iter()
                .filter_map(|k| d.metrics.get(*k).map(|v| format!("{k}={v:.3}")))
                .collect();
            [
                d.name.clone(),
                d.version.clone(),
                d.created.clone(),
                d.method.clone(),
                metrics.join(" "),
            ]
        })
        .collect();
    let header = ["NAME", "VERSION", "CREATED", "METHOD", "METRICS"].map(str::to_owned);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(exit::OK)
}
