//! `sluice dag`: the DAG as a terminal drawing (stages by level, each with what it reads from),
//! Graphviz DOT, or a Mermaid flowchart.

use std::fmt::Write;

use sluice_plan::Plan;

use crate::cli::DagFormat;

pub fn render(plan: &Plan, format: DagFormat) -> String {
    match format {
        DagFormat::Text => text(plan),
        DagFormat::Dot => dot(plan),
        DagFormat::Mermaid => mermaid(plan),
    }
}

/// Edges as (upstream, downstream, output names), in plan order.
fn edges(plan: &Plan) -> Vec<(usize, usize, Vec<String>)> {
    let mut out = Vec::new();
    for &i in plan.order() {
        for u in plan.upstream(i) {
            let up = &plan.stage(u).name;
            let mut labels: Vec<String> = plan
                .stage(i)
                .dependencies
                .iter()
                .filter(|d| &d.stage == up)
                .map(|d| d.output.clone())
                .collect();
            labels.sort();
            labels.dedup();
            out.push((u, i, labels));
        }
    }
    out
}

fn text(plan: &Plan) -> String {
    let levels = plan.levels();
    let width = plan
        .stages()
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0);
    let depth = levels.iter().copied().max().unwrap_or(0);
    let mut s = String::new();
    let _ = writeln!(s, "{} ({} stages)", plan.workflow.name, plan.stages().len());
    for level in 0..=depth {
        let row: Vec<usize> = plan
            .order()
            .iter()
            .copied()
            .filter(|&i| levels[i] == level)
            .collect();
        if level > 0 {
            let _ = writeln!(s, "   │");
            let _ = writeln!(s, "   ▼");
        }
        for (n, &i) in row.iter().enumerate() {
            let branch = if row.len() == 1 {
                "──"
            } else if n == 0 {
                "┬─"
            } else if n + 1 == row.len() {
                "└─"
            } else {
                "├─"
            };
            let stage = plan.stage(i);
            let from: Vec<String> = plan
                .upstream(i)
                .into_iter()
                .map(|u| plan.stage(u).name.clone())
                .collect();
            let from = if from.is_empty() {
                String::new()
            } else {
                format!("  ◀── {}", from.join(", "))
            };
            let _ = writeln!(s, "  {branch} {:<width$}{from}", stage.name);
        }
    }
    s
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn dot(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "digraph {} {{", quote(&plan.workflow.name));
    let _ = writeln!(s, "  rankdir=TB;");
    let _ = writeln!(s, "  node [shape=box, style=rounded];");
    for &i in plan.order() {
        let _ = writeln!(s, "  {};", quote(&plan.stage(i).name));
    }
    for (u, d, labels) in edges(plan) {
        let _ = writeln!(
            s,
            "  {} -> {} [label={}];",
            quote(&plan.stage(u).name),
            quote(&plan.stage(d).name),
            quote(&labels.join(", "))
        );
    }
    s.push_str("}\n");
    s
}

fn mermaid(plan: &Plan) -> String {
    let mut s = String::from("flowchart TD\n");
    for &i in plan.order() {
        let name = plan.stage(i).name.replace('"', "#quot;");
        let _ = writeln!(s, "  s{i}[\"{name}\"]");
    }
    for (u, d, labels) in edges(plan) {
        let label = labels.join(", ").replace('"', "#quot;");
        let _ = writeln!(s, "  s{u} -->|\"{label}\"| s{d}");
    }
    s
}
