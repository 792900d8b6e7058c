//! `augment`: makes new examples from existing ones with EDA (Wei & Zou, 2019: synonym
//! replacement, random insertion, random swap, random deletion) or with user templates. Each new
//! row carries its source row's id in `parent_id`, so that `split` keeps it in its source's split.
//!
//! The text augmented is `input`, or for chat rows the last user turn (and `input` is rendered
//! again); `output` is never changed. A new row's text depends only on the seed, its source row's
//! id and its number, not on the other rows or the thread count.

use std::path::Path;

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_stage::{OptionError, OutputSpec, StageContext, StageError, StageKind, StageReport};

use crate::options;
use crate::schema::{self, Example};
use crate::stats::{RuleCount, Stats};
use crate::synonyms::Synonyms;
use crate::{DATA, STATS, data_outputs, short_id};

/// Options of `augment`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AugmentOptions {
    /// The examples to augment: an upstream `data` output, like
    /// `${{ stages.clean.outputs.data }}`.
    pub data: String,
    /// How new rows are made: `eda` (default), `templates`, or `both` (each new row picks one
    /// of the two at random).
    #[serde(default)]
    pub method: Method,
    /// Bounds the output: at most `(factor - 1) × rows` new rows, so `1.5` adds at most half as
    /// many rows as there are, `2` at most one per row. Rows are chosen at random; a new row that
    /// would equal its source is not made. Default 1.5.
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// Seed of every random choice. Default 0.
    #[serde(default)]
    pub seed: u64,
    /// EDA rates: the share of a text's words each operation touches (at least one word).
    #[serde(default)]
    pub alpha: Alpha,
    /// A workspace-relative synonym table: one group of interchangeable words per line,
    /// separated by commas (`buy, purchase, order`; `#` starts a comment), or a `.json` object
    /// mapping a word to its synonyms. Default: a small English table shipped with sluice.
    #[serde(default)]
    pub synonyms: Option<String>,
    /// Templates for `templates`: each holds `{input}`, replaced by the text, e.g.
    /// `"Question: {input}"`, `"{input} Please answer briefly."`.
    #[serde(default)]
    pub templates: Vec<String>,
}

fn default_factor() -> f64 {
    1.5
}

/// How new rows are made.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Easy data augmentation: one of the four EDA operations, chosen at random per new row.
    #[default]
    Eda,
    /// Template paraphrase: the text put into one of `templates`, chosen at random.
    Templates,
    /// Either, chosen at random per new row.
    Both,
}

/// EDA rates, each in [0, 1]; 0 turns the operation off.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alpha {
    /// Synonym replacement: the share of words replaced by a synonym. Default 0.1.
    #[serde(default = "default_alpha")]
    pub synonym_replacement: f64,
    /// Random insertion: the share of words for which a synonym of a random word is inserted at
    /// a random place. Default 0.1.
    #[serde(default = "default_alpha")]
    pub random_insertion: f64,
    /// Random swap: the share of words for which two random words swap places. Default 0.1.
    #[serde(default = "default_alpha")]
    pub random_swap: f64,
    /// Random deletion: the probability that each word is deleted (one word always stays).
    /// Default 0.1.
    #[serde(default = "default_alpha")]
    pub random_deletion: f64,
}

fn default_alpha() -> f64 {
    0.1
}

impl Default for Alpha {
    fn default() -> Alpha {
        Alpha {
            synonym_replacement: 0.1,
            random_insertion: 0.1,
            random_swap: 0.1,
            random_deletion: 0.1,
        }
    }
}

/// The `augment` stage kind.
pub struct Augment;

impl StageKind for Augment {
    fn name(&self) -> &'static str {
        "augment"
    }

    fn version(&self) -> u32 {
        crate::KIND_VERSION
    }

    fn description(&self) -> &'static str {
        "make new examples with EDA or templates, each linked to its source row"
    }

    fn outputs(&self) -> Vec<OutputSpec> {
        data_outputs()
    }

    fn schema(&self) -> serde_json::Value {
        options::schema::<AugmentOptions>()
    }

    fn check(&self, with: &serde_json::Value) -> Vec<OptionError> {
        match options::parse::<AugmentOptions>(with) {
            Ok(o) => validate(&o),
            Err(e) => vec![e],
        }
    }

    fn reads(
        &self,
        with: &serde_json::Value,
        _workspace: &Path,
    ) -> Result<Vec<String>, StageError> {
        let o: AugmentOptions = options::parse_for_run(with)?;
        // The input table too, so that a plain workspace file given as `data` is hashed into the
        // key (the engine skips it when it is an upstream output, already an input).
        Ok(std::iter::once(o.data).chain(o.synonyms).collect())
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<StageReport, StageError> {
        crate::in_pool(|| execute(ctx))
    }
}

fn execute(ctx: &StageContext<'_>) -> Result<StageReport, StageError> {
    let o: AugmentOptions = options::parse_for_run(ctx.with)?;
    let synonyms = match &o.synonyms {
        None => Synonyms::builtin(),
        Some(rel) => {
            let text = std::fs::read_to_string(ctx.path(rel))
                .map_err(|e| StageError::failed(format!("cannot read {rel}: {e}")))?;
            Synonyms::parse(&text, rel.to_lowercase().ends_with(".json"))
                .map_err(|e| StageError::failed(format!("{rel}: {e}")))?
        }
    };
    let rows = crate::parquet::read_examples(&ctx.path(&o.data), &o.data)?;
    let rows_in = rows.len();
    let plan = variants_per_row(rows.len(), o.factor, o.seed);
    (ctx.progress)(&format!(
        "augmenting {rows_in} rows (up to {} new)",
        plan.iter().sum::<usize>()
    ));

    let augmenter = Augmenter {
        options: &o,
        synonyms: &synonyms,
    };
    let made: Vec<Vec<(Example, Op)>> = rows
        .par_iter()
        .zip(plan.par_iter())
        .map(|(row, &count)| augmenter.variants(row, count))
        .collect();
    ctx.check_cancelled()?;

    let planned: usize = plan.iter().sum();
    let mut counts = [0usize; 5];
    let mut out = Vec::with_capacity(rows_in + planned);
    for (row, new) in rows.into_iter().zip(made) {
        out.push(row);
        for (example, op) in new {
            counts[op as usize] += 1;
            out.push(example);
        }
    }
    let rows_new = out.len() - rows_in;
    crate::parquet::write_examples(ctx.output(DATA)?, &out)?;

    let mut stats = Stats::new(rows_in, out.len());
    stats
        .set("rows_new", rows_new)
        .set("not_made", planned - rows_new);
    for op in Op::ALL {
        stats.rule(RuleCount::added(op.name(), counts[op as usize]));
    }
    stats.write(ctx.output(STATS)?)?;
    let mut report = StageReport::default();
    report.metrics.insert("rows_in".into(), rows_in as f64);
    report.metrics.insert("rows_out".into(), out.len() as f64);
    report.metrics.insert("rows_new".into(), rows_new as f64);
    Ok(report)
}

/// How many new rows each row gets: `floor((factor - 1) × n)` in all, spread evenly, the
/// remainder going to rows chosen at random.
fn variants_per_row(n: usize, factor: f64, seed: u64) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    // The epsilon keeps 1.1 × 10 from flooring to 0.9999.
    let budget = ((factor - 1.0).max(0.0) * n as f64 + 1e-9).floor() as usize;
    let mut plan = vec![budget / n; n];
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    for &i in order.iter().take(budget % n) {
        plan[i] += 1;
    }
    plan
}

/// How a new row was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    SynonymReplacement = 0,
    RandomInsertion = 1,
    RandomSwap = 2,
    RandomDeletion = 3,
    Template = 4,
}

impl Op {
    const ALL: [Op; 5] = [
        Op::SynonymReplacement,
        Op::RandomInsertion,
        Op::RandomSwap,
        Op::RandomDeletion,
        Op::Template,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::SynonymReplacement => "synonym_replacement",
            Op::RandomInsertion => "random_insertion",
            Op::RandomSwap => "random_swap",
            Op::RandomDeletion => "random_deletion",
            Op::Template => "template",
        }
    }
}

struct Augmenter<'a> {
    options: &'a AugmentOptions,
    synonyms: &'a Synonyms,
}

impl Augmenter<'_> {
    /// The operations a new row may be made by.
    fn ops(&self) -> Vec<(Op, f64)> {
        let a = &self.options.alpha;
        let eda = [
            (Op::SynonymReplacement, a.synonym_replacement),
            (Op::RandomInsertion, a.random_insertion),
            (Op::RandomSwap, a.random_swap),
            (Op::RandomDeletion, a.random_deletion),
        ];
        let eda = eda.into_iter().filter(|(_, rate)| *rate > 0.0);
        let template = (!self.options.templates.is_empty()).then_some((Op::Template, 0.0));
        match self.options.method {
            Method::Eda => eda.collect(),
            Method::Templates => template.into_iter().collect(),
            Method::Both => {
                // Half the new rows from templates, half from EDA, when both can be used.
                let eda: Vec<_> = eda.collect();
                match template {
                    Some(t) if !eda.is_empty() => {
                        let mut ops = eda.clone();
                        ops.extend(std::iter::repeat_n(t, eda.len()));
                        ops
                    }
                    Some(t) => vec![t],
                    None => eda,
                }
            }
        }
    }

    /// Up to `count` new rows made from `row`, each different from it and from each other.
    fn variants(&self, row: &Example, count: usize) -> Vec<(Example, Op)> {
        let ops = self.ops();
        let Some(original) = target_text(row) else {
            return Vec::new();
        };
        if count == 0 || ops.is_empty() || original.trim().is_empty() {
            return Vec::new();
        }
        let root = row.group_id().to_owned();
        let mut made: Vec<(Example, Op)> = Vec::with_capacity(count);
        let mut texts: Vec<String> = vec![original.to_owned()];
        for k in 0..count {
            let mut rng = rng_for(self.options.seed, &row.id, k);
            // A few tries: an operation may find nothing to change (no word with synonyms).
            for _ in 0..4 {
                let (op, rate) = ops[rng.random_range(0..ops.len())];
                let text = self.apply(op, rate, original, &mut rng);
                if texts.contains(&text) {
                    continue;
                }
                texts.push(text.clone());
                let mut example = row.clone();
                example.id = short_id(&format!("augment\n{}\n{k}", row.id));
                example.parent_id = Some(root.clone());
                set_target_text(&mut example, text);
                made.push((example, op));
                break;
            }
        }
        made
    }

    fn apply(&self, op: Op, rate: f64, text: &str, rng: &mut ChaCha8Rng) -> String {
        if op == Op::Template {
            let templates = &self.options.templates;
            let template = &templates[rng.random_range(0..templates.len())];
            return template.replace("{input}", text);
        }
        let mut words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        // EDA's n = α·l, at least one word.
        let n = ((rate * words.len() as f64).round() as usize).max(1);
        match op {
            Op::SynonymReplacement => self.replace_synonyms(&mut words, n, rng),
            Op::RandomInsertion => self.insert_synonyms(&mut words, n, rng),
            Op::RandomSwap => swap_words(&mut words, n, rng),
            Op::RandomDeletion => delete_words(&mut words, rate, rng),
            Op::Template => unreachable!("handled above"),
        }
        words.join(" ")
    }

    /// A synonym for a token, keeping its surrounding punctuation and leading capital.
    fn synonym(&self, token: &str, rng: &mut ChaCha8Rng) -> Option<String> {
        let (prefix, core, suffix) = split_token(token);
        let choices = self.synonyms.of(&core.to_lowercase());
        if choices.is_empty() {
            return None;
        }
        let choice = &choices[rng.random_range(0..choices.len())];
        let choice = if core.chars().next().is_some_and(char::is_uppercase) {
            capitalize(choice)
        } else {
            choice.clone()
        };
        Some(format!("{prefix}{choice}{suffix}"))
    }

    fn has_synonyms(&self, token: &str) -> bool {
        !self
            .synonyms
            .of(&split_token(token).1.to_lowercase())
            .is_empty()
    }

    fn replace_synonyms(&self, words: &mut [String], n: usize, rng: &mut ChaCha8Rng) {
        let mut candidates: Vec<usize> = (0..words.len())
            .filter(|&i| self.has_synonyms(&words[i]))
            .collect();
        candidates.shuffle(rng);
        for &i in candidates.iter().take(n) {
            if let Some(s) = self.synonym(&words[i], rng) {
                words[i] = s;
            }
        }
    }

    fn insert_synonyms(&self, words: &mut Vec<String>, n: usize, rng: &mut ChaCha8Rng) {
        for _ in 0..n {
            let candidates: Vec<usize> = (0..words.len())
                .filter(|&i| self.has_synonyms(&words[i]))
                .collect();
            if candidates.is_empty() {
                return;
            }
            let from = candidates[rng.random_range(0..candidates.len())];
            let (_, core, _) = split_token(&words[from]);
            let choices = self.synonyms.of(&core.to_lowercase());
            let synonym = choices[rng.random_range(0..choices.len())].clone();
            let at = rng.random_range(0..=words.len());
            words.insert(at, synonym);
        }
    }
}

fn swap_words(words: &mut [String], n: usize, rng: &mut ChaCha8Rng) {
    if words.len() < 2 {
        return;
    }
    for _ in 0..n {
        let a = rng.random_range(0..words.len());
        let b = rng.random_range(0..words.len());
        words.swap(a, b);
    }
}

fn delete_words(words: &mut Vec<String>, p: f64, rng: &mut ChaCha8Rng) {
    if words.len() < 2 {
        return;
    }
    let keep: Vec<bool> = words.iter().map(|_| !rng.random_bool(p)).collect();
    if keep.iter().any(|k| *k) {
        let mut keep = keep.into_iter();
        words.retain(|_| keep.next().unwrap_or(true));
    } else {
        let one = words.swap_remove(rng.random_range(0..words.len()));
        *words = vec![one];
    }
}

/// (leading punctuation, word, trailing punctuation).
fn split_token(token: &str) -> (&str, &str, &str) {
    let start = token
        .char_indices()
        .find(|(_, c)| c.is_alphanumeric())
        .map_or(token.len(), |(i, _)| i);
    let end = token
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_alphanumeric())
        .map_or(start, |(i, c)| i + c.len_utf8());
    (
        &token[..start],
        &token[start..end.max(start)],
        &token[end.max(start)..],
    )
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The random source of new row `k` of row `id`: independent of every other row.
fn rng_for(seed: u64, id: &str, k: usize) -> ChaCha8Rng {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"sluice augment\0");
    hasher.update(&seed.to_le_bytes());
    hasher.update(&(k as u64).to_le_bytes());
    hasher.update(id.as_bytes());
    ChaCha8Rng::from_seed(*hasher.finalize().as_bytes())
}

/// The turn of a chat row that augmentation rewrites: the last user turn before the answer.
fn chat_turn(row: &Example) -> Option<usize> {
    let messages = row.messages.as_ref()?;
    let last = schema::last_assistant(messages)?;
    messages[..last].iter().rposition(|m| m.role == "user")
}

/// The text to augment, or `None` for a chat row with no user turn.
fn target_text(row: &Example) -> Option<&str> {
    match &row.messages {
        Some(messages) if schema::last_assistant(messages).is_some() => {
            chat_turn(row).map(|i| messages[i].content.as_str())
        }
        _ => Some(&row.input),
    }
}

fn set_target_text(row: &mut Example, text: String) {
    match chat_turn(row) {
        Some(i) => {
            if let Some(messages) = &mut row.messages {
                messages[i].content = text;
            }
            schema::render_chat(row);
        }
        None => row.input = text,
    }
}

fn validate(o: &AugmentOptions) -> Vec<OptionError> {
    let mut errors: Vec<OptionError> = options::workspace_path(&["data"], &o.data)
        .into_iter()
        .collect();
    if !(o.factor.is_finite() && o.factor >= 1.0) {
        errors.push(
            OptionError::new(&["factor"], format!("{} is below 1", o.factor))
                .hint("1.5 adds at most half as many rows as there are; 1 adds none"),
        );
    }
    let a = &o.alpha;
    for (key, rate) in [
        ("synonym_replacement", a.synonym_replacement),
        ("random_insertion", a.random_insertion),
        ("random_swap", a.random_swap),
        ("random_deletion", a.random_deletion),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            errors.push(OptionError::new(
                &["alpha", key],
                format!("{rate} is not in [0, 1]"),
            ));
        }
    }
    let eda_off = [
        a.synonym_replacement,
        a.random_insertion,
        a.random_swap,
        a.random_deletion,
    ]
    .iter()
    .all(|r| *r == 0.0);
    if o.method == Method::Eda && eda_off {
        errors.push(OptionError::new(
            &["alpha"],
            "every EDA rate is 0: nothing would be made",
        ));
    }
    if matches!(o.method, Method::Templates | Method::Both) && o.templates.is_empty() {
        errors.push(
            OptionError::new(&["templates"], "method `templates` needs templates")
                .hint("add `templates: [\"Question: {input}\"]`"),
        );
    }
    for (i, t) in o.templates.iter().enumerate() {
        if !t.contains("{input}") {
            errors.push(OptionError::new(
                &["templates", &i.to_string()],
                format!("template `{t}` has no `{{input}}`"),
            ));
        }
    }
    if let Some(path) = &o.synonyms {
        errors.extend(options::workspace_path(&["synonyms"], path));
    }
    errors
}

#[cfg(test)]
mod tests;
