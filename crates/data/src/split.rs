//! `split`: divides examples into train, validation and test sets.
//!
//! Rows are assigned by group, never one by one: a row's group is its `parent_id` when it has one
//! (a row made by `augment`), else its `id`, so an augmented row always lands in its source's
//! split and cannot leak a test example into training. Each output keeps the input's row order.

use std::collections::BTreeMap;

use polars::prelude::PlHashMap;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_stage::{OptionError, OutputSpec, StageContext, StageError, StageKind, StageReport};

use crate::options;
use crate::schema;
use crate::stats::Stats;
use crate::table::Examples;
use crate::{STATS, stats_output};

/// Options of `split`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitOptions {
    /// The examples to split: an upstream `data` output, like
    /// `${{ stages.augment.outputs.data }}`.
    pub data: String,
    /// The share of rows in each split; they must sum to 1. A split left out gets 0. Default
    /// `{train: 0.8, validation: 0.1, test: 0.1}`.
    #[serde(default)]
    pub ratios: Ratios,
    /// Seed of the shuffle (`random`) or of the hash (`hash`). Default 0.
    #[serde(default)]
    pub seed: u64,
    /// `random` (default): groups are shuffled and cut by the ratios, so each split gets as
    /// close to its share as groups allow. `hash`: each group goes by the blake3 of the seed and
    /// its id, so appending new data never moves an old example to another split.
    #[serde(default)]
    pub mode: Mode,
    /// Stratify by a column so that each split has the same mix of its values: `label`. Needs
    /// `mode: random`.
    #[serde(default)]
    pub stratify: Option<Stratify>,
}

/// The share of each split.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Ratios {
    /// The share of the training set.
    #[serde(default)]
    pub train: f64,
    /// The share of the validation set.
    #[serde(default)]
    pub validation: f64,
    /// The share of the test set.
    #[serde(default)]
    pub test: f64,
}

impl Default for Ratios {
    fn default() -> Ratios {
        Ratios {
            train: 0.8,
            validation: 0.1,
            test: 0.1,
        }
    }
}

impl Ratios {
    /// The split at position `u` in [0, 1).
    fn pick(&self, u: f64) -> Part {
        if u < self.train {
            Part::Train
        } else if u < self.train + self.validation {
            Part::Validation
        } else {
            Part::Test
        }
    }
}

/// How groups are assigned to splits.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Shuffle the groups with the seed, then cut by the ratios.
    #[default]
    Random,
    /// Assign each group by the blake3 of the seed and its id: stable when data is appended.
    Hash,
}

/// A column to stratify by.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Stratify {
    /// The `label` column (rows without a label form their own stratum).
    Label,
}

/// One of the three splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    Train,
    Validation,
    Test,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Train, Part::Validation, Part::Test];

    pub fn name(self) -> &'static str {
        match self {
            Part::Train => "train",
            Part::Validation => "validation",
            Part::Test => "test",
        }
    }
}

/// The `split` stage kind.
pub struct Split;

impl StageKind for Split {
    fn name(&self) -> &'static str {
        "split"
    }

    fn version(&self) -> u32 {
        crate::KIND_VERSION
    }

    fn description(&self) -> &'static str {
        "divide examples into train, validation and test sets, keeping augmented rows with their source"
    }

    fn outputs(&self) -> Vec<OutputSpec> {
        vec![
            OutputSpec {
                name: "train",
                file: "train.parquet",
                description: "the training set, in the example schema",
            },
            OutputSpec {
                name: "validation",
                file: "validation.parquet",
                description: "the validation set, in the example schema",
            },
            OutputSpec {
                name: "test",
                file: "test.parquet",
                description: "the test set, in the example schema",
            },
            stats_output(),
        ]
    }

    fn schema(&self) -> serde_json::Value {
        options::schema::<SplitOptions>()
    }

    fn check(&self, with: &serde_json::Value) -> Vec<OptionError> {
        match options::parse::<SplitOptions>(with) {
            Ok(o) => validate(&o),
            Err(e) => vec![e],
        }
    }

    /// The input table, so that a plain workspace file given as `data` is hashed into the key
    /// (the engine skips it when it is an upstream output, already an input).
    fn reads(
        &self,
        with: &serde_json::Value,
        _workspace: &std::path::Path,
    ) -> Result<Vec<String>, StageError> {
        let o: SplitOptions = options::parse_for_run(with)?;
        Ok(vec![o.data])
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<StageReport, StageError> {
        crate::in_pool(|| execute(ctx))
    }
}

fn execute(ctx: &StageContext<'_>) -> Result<StageReport, StageError> {
    let o: SplitOptions = options::parse_for_run(ctx.with)?;
    let table = Examples::read(&ctx.path(&o.data), &o.data)?;
    (ctx.progress)(&format!("splitting {} rows", table.height()));
    let ids = table.text(schema::ID);
    let parents = table.optional_text(schema::PARENT_ID);
    let labels = table.optional_text(schema::LABEL);
    let groups: Vec<&str> = ids
        .iter()
        .zip(&parents)
        .map(|(id, parent)| parent.unwrap_or(id))
        .collect();
    let assignment = assign(&groups, &labels, &o);
    ctx.check_cancelled()?;

    let mut stats = Stats::default();
    stats.set("rows_in", table.height());
    let mut report = StageReport::default();
    // The parts are written at once, each to its own file.
    let mut outputs = Vec::with_capacity(Part::ALL.len());
    for part in Part::ALL {
        let keep: Vec<bool> = assignment.rows.iter().map(|p| *p == part).collect();
        outputs.push((part, ctx.output(part.name())?, keep));
    }
    outputs
        .par_iter()
        .map(|(_, path, keep)| {
            let mut rows = table
                .filter(keep)
                .map_err(|e| StageError::failed(format!("cannot write {}: {e}", path.display())))?;
            rows.write(path)
        })
        .collect::<Result<Vec<()>, StageError>>()?;
    for (part, _, keep) in &outputs {
        let rows = keep.iter().filter(|k| **k).count();
        let mut entry = serde_json::Map::new();
        entry.insert("rows".into(), rows.into());
        // A group's rows all go to one part.
        let groups = assignment.groups.iter().filter(|p| *p == part).count();
        entry.insert("groups".into(), groups.into());
        if o.stratify.is_some() {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for (label, _) in labels.iter().zip(keep).filter(|(_, k)| **k) {
                *counts.entry(label.unwrap_or_default()).or_default() += 1;
            }
            entry.insert(
                "labels".into(),
                serde_json::to_value(counts).unwrap_or_default(),
            );
        }
        stats.set(part.name(), serde_json::Value::Object(entry));
        report
            .metrics
            .insert(format!("rows_{}", part.name()), rows as f64);
    }
    stats.write(ctx.output(STATS)?)?;
    Ok(report)
}

/// Where the rows and their groups went.
struct Assignment {
    /// The part of each row, in row order.
    rows: Vec<Part>,
    /// The part of each group, in order of first appearance.
    groups: Vec<Part>,
}

/// Assigns rows by their group ids (and labels, for `stratify`).
fn assign(group_ids: &[&str], labels: &[Option<&str>], o: &SplitOptions) -> Assignment {
    // Groups in order of first appearance, with their size and first label.
    let mut index: PlHashMap<&str, usize> =
        PlHashMap::with_capacity_and_hasher(group_ids.len(), Default::default());
    let mut groups: Vec<(&str, usize, Option<&str>)> = Vec::new();
    let mut group_of = Vec::with_capacity(group_ids.len());
    for (&key, &label) in group_ids.iter().zip(labels) {
        let g = *index.entry(key).or_insert_with(|| {
            groups.push((key, 0, label));
            groups.len() - 1
        });
        groups[g].1 += 1;
        group_of.push(g);
    }

    let mut part_of_group = vec![Part::Train; groups.len()];
    match o.mode {
        Mode::Hash => {
            for (g, (key, _, _)) in groups.iter().enumerate() {
                part_of_group[g] = o.ratios.pick(hash_position(o.seed, key));
            }
        }
        Mode::Random => {
            let mut strata: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
            for (g, (_, _, label)) in groups.iter().enumerate() {
                let stratum = if o.stratify.is_some() { *label } else { None };
                strata.entry(stratum).or_default().push(g);
            }
            let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
            for members in strata.values_mut() {
                members.shuffle(&mut rng);
                let total: usize = members.iter().map(|&g| groups[g].1).sum();
                // Each group goes where the middle of its rows falls on the cumulative scale,
                // so every split gets as close to its share as the group sizes allow.
                let mut before = 0usize;
                for &g in members.iter() {
                    let size = groups[g].1;
                    let middle = (before as f64 + size as f64 / 2.0) / total as f64;
                    part_of_group[g] = o.ratios.pick(middle);
                    before += size;
                }
            }
        }
    }
    Assignment {
        rows: group_of.into_iter().map(|g| part_of_group[g]).collect(),
        groups: part_of_group,
    }
}

/// A group's place in [0, 1) for `mode: hash`: the first 8 bytes of a blake3 hash.
fn hash_position(seed: u64, key: &str) -> f64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"sluice split\0");
    hasher.update(&seed.to_le_bytes());
    hasher.update(key.as_bytes());
    let bytes = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes.as_bytes()[..8]);
    // 53 bits, the precision of an f64, so the result is exactly representable and below 1.
    (u64::from_le_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// Four decimals, for hints.
fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn validate(o: &SplitOptions) -> Vec<OptionError> {
    let mut errors: Vec<OptionError> = options::workspace_path(&["data"], &o.data)
        .into_iter()
        .collect();
    let r = &o.ratios;
    for (key, value) in [
        ("train", r.train),
        ("validation", r.validation),
        ("test", r.test),
    ] {
        if !(0.0..=1.0).contains(&value) {
            errors.push(OptionError::new(
                &["ratios", key],
                format!("{value} is not in [0, 1]"),
            ));
        }
    }
    let sum = r.train + r.validation + r.test;
    if (sum - 1.0).abs() > 1e-9 {
        let error = OptionError::new(&["ratios"], format!("sum to {}, not 1", round(sum)));
        errors.push(if sum > 0.0 && sum.is_finite() {
            error.hint(format!(
                "scaled to sum to 1: {{train: {}, validation: {}, test: {}}}",
                round(r.train / sum),
                round(r.validation / sum),
                round(r.test / sum)
            ))
        } else {
            error
        });
    }
    if o.stratify.is_some() && o.mode == Mode::Hash {
        errors.push(
            OptionError::new(&["stratify"], "`stratify` needs `mode: random`")
                .hint("hash mode assigns each group on its own, so it cannot balance labels"),
        );
    }
    errors
}

#[cfg(test)]
mod tests;
