//! `sluice devices`: the inventory stages are placed on.

use anyhow::Result;

use crate::cli::DevicesArgs;
use crate::exit;
use crate::report::print_json;
use crate::run::inventory;
use sluice_plan::ByteSize;

pub fn devices(args: DevicesArgs) -> Result<u8> {
    let inv = inventory(&args.devices)?;
    if args.json {
        print_json(&inv);
        return Ok(exit::OK);
    }
    let memory = inv
        .memory
        .map(|m| format!(", {} memory", ByteSize(m)))
        .unwrap_or_default();
    println!("cpu: {} cores{memory}", inv.cpus);
    if inv.gpus.is_empty() {
        println!("gpus: none (from {})", inv.source);
    }
    for g in &inv.gpus {
        let mut line = format!("{g}");
        if let Some(name) = &g.name {
            line.push_str(&format!("  {name}"));
        }
        match (g.memory_total, g.memory_free) {
            (Some(t), Some(f)) if t != f => {
                line.push_str(&format!("  {} free of {}", ByteSize(f), ByteSize(t)))
            }
            (Some(t), _) => line.push_str(&format!("  {}", ByteSize(t))),
            _ => {}
        }
        line.push_str(&format!("  (from {})", inv.source));
        println!("{line}");
    }
    Ok(exit::OK)
}
