//! The builtin data stage kinds of sluice — `collect`, `clean`, `augment`, `split` — behind the
//! engine's [`StageKind`] trait. Each reads and writes Parquet in one example schema
//! ([`schema`]), writes a `stats.json` beside its data, and is deterministic: the same input and
//! seed give byte-identical files, whatever the thread count.
//!
//! This crate knows the stage API and nothing else of the engine: no scheduler, no YAML, no store.

pub mod augment;
pub mod clean;
pub mod collect;
mod fetch;
mod format;
mod handoff;
mod minhash;
mod pairs;
mod parquet;
pub mod schema;
pub mod split;
mod stats;
mod style;
mod synonyms;
mod table;
mod text;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::sync::LazyLock;

use sluice_stage::{OutputSpec, StageKind, options};

pub use parquet::{TableColumn, read_examples, read_frame, write_examples, write_table};

pub use augment::Augment;
pub use clean::Clean;
pub use collect::Collect;
pub use split::Split;

/// The four data stage kinds, for the binary's catalog.
pub fn kinds() -> Vec<Box<dyn StageKind>> {
    vec![
        Box::new(Collect),
        Box::new(Clean),
        Box::new(Augment),
        Box::new(Split),
    ]
}

/// The version of every data stage kind: it counts changes to the bytes of the Parquet they
/// write, so that a cached output is never one that a run with the same key would not write.
/// 2: pages are LZ4 instead of zstd. 3: `id`, `input` and `output` are plain-encoded, never
/// dictionary-encoded. 4: those three columns carry a null count but no minimum or maximum.
const KIND_VERSION: u32 = 4;

const DATA: &str = "data";
const STATS: &str = "stats";

fn stats_output() -> OutputSpec {
    OutputSpec {
        name: STATS,
        file: "stats.json",
        description: "rows in, rows out and what each rule removed or changed",
    }
}

/// The outputs of every kind but `split`.
fn data_outputs() -> Vec<OutputSpec> {
    vec![
        OutputSpec {
            name: DATA,
            file: "data.parquet",
            description: "the examples, as Parquet in the example schema",
        },
        stats_output(),
    ]
}

/// The data stages' threads: `POLARS_MAX_THREADS` of them when it is set (the variable that
/// sizes polars' own pool), else one per core. Results never depend on the number.
static POOL: LazyLock<Option<rayon::ThreadPool>> = LazyLock::new(|| {
    let threads = std::env::var("POLARS_MAX_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("sluice-data-{i}"))
        .build()
        .ok()
});

/// Runs a stage on the data stages' pool, or on the rayon pool it is already in (tests pick
/// their own sizes that way).
fn in_pool<R: Send>(op: impl FnOnce() -> R + Send) -> R {
    match POOL.as_ref() {
        Some(pool) if rayon::current_thread_index().is_none() => pool.install(op),
        _ => op(),
    }
}

/// A short, stable id: the first 16 hex digits of the blake3 of `text`.
fn short_id(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex()[..16].to_owned()
}
