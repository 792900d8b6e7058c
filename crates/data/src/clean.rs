//! `clean`: normalises text, strips and scrubs it, filters rows and removes duplicates and near
//! duplicates, counting what every rule did.
//!
//! The rules run in a fixed order, whatever the order of the options: `normalize`, `strip` (each
//! pattern), `scrub` (email, url, phone), `drop_regex` (each pattern), `drop_empty_output`,
//! `min_chars`, `max_chars`, `min_words`, `max_words`, `dedup`, `near_dedup`. A rule that removes
//! rows sees only the rows every earlier rule kept.

use std::hash::{BuildHasher, Hasher};

use polars::prelude::{PlFixedStateQuality, PolarsError};
use rayon::prelude::*;
use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_stage::{OptionError, OutputSpec, StageContext, StageError, StageKind, StageReport};

use crate::minhash::{self, Lsh, MinHasher};
use crate::options;
use crate::schema::{self, Example};
use crate::stats::{RuleCount, Stats};
use crate::table::Examples;
use crate::text;
use crate::{DATA, STATS, data_outputs};

/// Options of `clean`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CleanOptions {
    /// The examples to clean: an upstream `data` output, like
    /// `${{ stages.collect.outputs.data }}`.
    pub data: String,
    /// Unicode NFC and whitespace normalisation of `input`, `output` and message contents:
    /// whitespace runs become one space, line breaks `\n`, at most one blank line in a row,
    /// ends trimmed. Default `true`.
    #[serde(default = "yes")]
    pub normalize: bool,
    /// Regular expressions whose matches are removed from `input`, `output` and message
    /// contents, e.g. `'\$[A-Z]{1,5}\b'` for stock tickers. Whitespace is normalised again
    /// where something was removed.
    #[serde(default)]
    pub strip: Vec<String>,
    /// Personal data to replace by placeholders in `input`, `output` and message contents:
    /// `email` → `<EMAIL>`, `url` → `<URL>`, `phone` → `<PHONE>` (applied in that order).
    #[serde(default)]
    pub scrub: Vec<Scrub>,
    /// Drop rows whose `input` or `output` matches any of these regular expressions.
    #[serde(default)]
    pub drop_regex: Vec<String>,
    /// Drop rows whose `output` is empty (or only whitespace). Default `false`.
    #[serde(default)]
    pub drop_empty_output: bool,
    /// Drop rows where a field of `length_fields` has fewer characters.
    #[serde(default)]
    pub min_chars: Option<usize>,
    /// Drop rows where a field of `length_fields` has more characters.
    #[serde(default)]
    pub max_chars: Option<usize>,
    /// Drop rows where a field of `length_fields` has fewer whitespace-separated words.
    #[serde(default)]
    pub min_words: Option<usize>,
    /// Drop rows where a field of `length_fields` has more whitespace-separated words.
    #[serde(default)]
    pub max_words: Option<usize>,
    /// The fields the length filters measure, each on its own: a row is kept only if every
    /// listed field is within every bound. Default `[input, output]`; use `[input]` for
    /// plain-text data, whose `output` is empty.
    #[serde(default = "both_fields")]
    pub length_fields: Vec<TextField>,
    /// Duplicate removal, keeping the first row: `none` (default), `exact` (identical fields),
    /// `normalized` (equal after lowercasing and removing punctuation and extra whitespace), or a
    /// list of both, `[exact, normalized]`, which removes exact duplicates first and then the
    /// normalised ones that remain, counting each rule on its own.
    #[serde(default)]
    pub dedup: DedupRules,
    /// The fields that make two rows duplicates, for `dedup` and `near_dedup`. Default
    /// `[input, output]`; `[input]` removes repeated prompts even with different answers.
    #[serde(default = "both_fields")]
    pub dedup_fields: Vec<TextField>,
    /// Near-duplicate removal with MinHash and LSH, keeping the first row; `{}` for the defaults.
    #[serde(default)]
    pub near_dedup: Option<NearDedup>,
}

fn yes() -> bool {
    true
}

fn both_fields() -> Vec<TextField> {
    vec![TextField::Input, TextField::Output]
}

/// A text column of the example schema.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TextField {
    Input,
    Output,
}

impl TextField {
    fn of<'a>(self, row: &Texts<'a>) -> &'a str {
        match self {
            TextField::Input => row.input,
            TextField::Output => row.output,
        }
    }
}

/// The text fields of one row, borrowed from the table's columns: all that the filters and
/// de-duplication look at.
#[derive(Clone, Copy)]
struct Texts<'a> {
    input: &'a str,
    output: &'a str,
}

/// A kind of personal data to scrub.
#[derive(
    Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Scrub {
    /// E-mail addresses → `<EMAIL>`.
    Email,
    /// http(s) and `www.` URLs → `<URL>`.
    Url,
    /// Phone numbers written with separators (`+1 555 123 4567`, `(555) 123-4567`) or in
    /// international form (`+4915112345678`) → `<PHONE>`.
    Phone,
}

impl Scrub {
    fn rule(self) -> &'static str {
        match self {
            Scrub::Email => "scrub_email",
            Scrub::Url => "scrub_url",
            Scrub::Phone => "scrub_phone",
        }
    }

    fn placeholder(self) -> &'static str {
        match self {
            Scrub::Email => "<EMAIL>",
            Scrub::Url => "<URL>",
            Scrub::Phone => "<PHONE>",
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            Scrub::Email => r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b",
            Scrub::Url => r#"(?i)\b(?:https?://|www\.)[^\s<>"']*[^\s<>"'.,;:!?)\]}]"#,
            Scrub::Phone => {
                r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?|\b\d{1,4}[ .-])(?:\d{2,4}[ .-]){1,3}\d{2,4}\b|\+\d{8,15}\b"
            }
        }
    }
}

/// Near-duplicate removal settings.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NearDedup {
    /// Rows whose estimated Jaccard similarity (of character n-grams of the normalised
    /// `dedup_fields`) to an earlier kept row reaches this are removed. Default 0.8.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Hash functions per MinHash signature. Default 128.
    #[serde(default = "default_num_perm")]
    pub num_perm: usize,
    /// LSH bands (each of `num_perm / bands` values). Default: the number that best separates
    /// pairs above and below `threshold`.
    #[serde(default)]
    pub bands: Option<usize>,
    /// Characters per n-gram. Default 5.
    #[serde(default = "default_ngram")]
    pub ngram: usize,
    /// Seed of the hash functions. Default 0.
    #[serde(default)]
    pub seed: u64,
}

fn default_threshold() -> f64 {
    0.8
}

fn default_num_perm() -> usize {
    128
}

fn default_ngram() -> usize {
    5
}

/// Which duplicates to remove.
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Dedup {
    /// Keep duplicates.
    #[default]
    None,
    /// Remove rows whose fields equal an earlier row's exactly (after `normalize`).
    Exact,
    /// Remove rows equal to an earlier row after lowercasing and removing punctuation and extra
    /// whitespace.
    Normalized,
}

/// The `dedup` option: the de-duplication rules to apply, each once, in the order `exact`,
/// `normalized` (whatever the order written); `none` applies none. Written as one kind or a list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DedupRules(Vec<Dedup>);

impl DedupRules {
    fn new(kinds: impl IntoIterator<Item = Dedup>) -> DedupRules {
        let mut kinds: Vec<Dedup> = kinds.into_iter().filter(|k| *k != Dedup::None).collect();
        kinds.sort();
        kinds.dedup();
        DedupRules(kinds)
    }

    /// The rules to apply, in order.
    pub fn kinds(&self) -> &[Dedup] {
        &self.0
    }
}

impl From<Dedup> for DedupRules {
    fn from(kind: Dedup) -> DedupRules {
        DedupRules::new([kind])
    }
}

impl Serialize for DedupRules {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [] => Dedup::None.serialize(s),
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for DedupRules {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DedupRules, D::Error> {
        struct Rules;
        impl<'de> serde::de::Visitor<'de> for Rules {
            type Value = DedupRules;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`none`, `exact`, `normalized` or a list of them")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DedupRules, E> {
                use serde::de::IntoDeserializer;
                Dedup::deserialize(v.into_deserializer()).map(DedupRules::from)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<DedupRules, A::Error> {
                let mut kinds = Vec::new();
                while let Some(kind) = seq.next_element::<Dedup>()? {
                    kinds.push(kind);
                }
                Ok(DedupRules::new(kinds))
            }
        }
        d.deserialize_any(Rules)
    }
}

impl JsonSchema for DedupRules {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DedupRules".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let kind = generator.subschema_for::<Dedup>();
        schemars::json_schema!({
            "anyOf": [kind, {"type": "array", "items": kind}]
        })
    }
}

/// The `clean` stage kind.
pub struct Clean;

impl StageKind for Clean {
    fn name(&self) -> &'static str {
        "clean"
    }

    fn version(&self) -> u32 {
        crate::KIND_VERSION
    }

    fn description(&self) -> &'static str {
        "normalise, strip, scrub, filter and de-duplicate examples"
    }

    fn outputs(&self) -> Vec<OutputSpec> {
        data_outputs()
    }

    fn schema(&self) -> serde_json::Value {
        options::schema::<CleanOptions>()
    }

    fn check(&self, with: &serde_json::Value) -> Vec<OptionError> {
        match options::parse::<CleanOptions>(with) {
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
        let o: CleanOptions = options::parse_for_run(with)?;
        Ok(vec![o.data])
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<StageReport, StageError> {
        crate::in_pool(|| execute(ctx))
    }
}

fn execute(ctx: &StageContext<'_>) -> Result<StageReport, StageError> {
    let o: CleanOptions = options::parse_for_run(ctx.with)?;
    let table = Examples::read(&ctx.path(&o.data), &o.data)?;
    let rows_in = table.height();
    (ctx.progress)(&format!("cleaning {rows_in} rows"));
    let (mut table, rules) = clean(ctx, &o, table)?;
    table.write(ctx.output(DATA)?)?;
    let rows_out = table.height();

    let mut stats = Stats::new(rows_in, rows_out);
    let mut report = StageReport::default();
    let mut duplicate = 0;
    let mut near = 0;
    let mut filtered = 0;
    for rule in rules {
        if rule.effect == "removed" {
            match rule.rule.as_str() {
                "dedup_exact" | "dedup_normalized" => duplicate += rule.count,
                "near_dedup" => near += rule.count,
                _ => filtered += rule.count,
            }
        }
        stats.rule(rule);
    }
    stats.write(ctx.output(STATS)?)?;
    for (name, value) in [
        ("rows_in", rows_in as u64),
        ("rows_out", rows_out as u64),
        ("dropped_duplicate", duplicate),
        ("dropped_near_duplicate", near),
        ("dropped_filtered", filtered),
    ] {
        report.metrics.insert(name.into(), value as f64);
    }
    Ok(report)
}

fn compile(patterns: &[String]) -> Result<Vec<Regex>, StageError> {
    patterns
        .iter()
        .map(|p| Regex::new(p).map_err(|e| StageError::failed(format!("bad regex `{p}`: {e}"))))
        .collect()
}

fn table_error(e: PolarsError) -> StageError {
    StageError::failed(format!("cannot build the cleaned table: {e}"))
}

/// Applies every rule in order; returns the kept rows and what each rule did.
fn clean(
    ctx: &StageContext<'_>,
    o: &CleanOptions,
    mut table: Examples,
) -> Result<(Examples, Vec<RuleCount>), StageError> {
    let mut rules = Vec::new();

    // Rules that change text, each row on its own: in parallel, counted per rule.
    let mut edits: Vec<Edit> = Vec::new();
    if o.normalize {
        edits.push(Edit::Normalize);
    }
    for (pattern, regex) in o.strip.iter().zip(compile(&o.strip)?) {
        edits.push(Edit::Strip(pattern.clone(), regex));
    }
    let mut scrub = o.scrub.clone();
    scrub.sort();
    scrub.dedup();
    for kind in scrub {
        let regex = Regex::new(kind.pattern()).expect("scrub patterns are valid");
        edits.push(Edit::Scrub(kind, regex));
    }
    if !edits.is_empty() {
        let counts = if table.has_messages() {
            // A chat row's turns are rewritten with its `input` and `output`: row by row.
            let mut rows = table.to_rows();
            let counts = edit_rows(&edits, &mut rows);
            table = Examples::from_rows(&rows).map_err(table_error)?;
            counts
        } else {
            edit_columns(&edits, &mut table)?
        };
        for (edit, count) in edits.iter().zip(counts) {
            rules.push(edit.count(count));
        }
        ctx.check_cancelled()?;
    }

    // Filters: a row is removed by the first filter it fails.
    let mut filters: Vec<Filter> = Vec::new();
    for (pattern, regex) in o.drop_regex.iter().zip(compile(&o.drop_regex)?) {
        filters.push(Filter::Regex(pattern.clone(), regex));
    }
    if o.drop_empty_output {
        filters.push(Filter::EmptyOutput);
    }
    let lengths = [
        (o.min_chars, Bound::MinChars),
        (o.max_chars, Bound::MaxChars),
        (o.min_words, Bound::MinWords),
        (o.max_words, Bound::MaxWords),
    ];
    for (limit, bound) in lengths {
        if let Some(limit) = limit {
            filters.push(Filter::Length(bound, limit, o.length_fields.clone()));
        }
    }
    if !filters.is_empty() {
        let failed: Vec<Option<usize>> = texts(&table)
            .par_iter()
            .map(|row| filters.iter().position(|f| !f.keeps(row)))
            .collect();
        for (i, filter) in filters.iter().enumerate() {
            let count = failed.iter().filter(|f| **f == Some(i)).count();
            rules.push(filter.count(count));
        }
        let keep: Vec<bool> = failed.iter().map(Option::is_none).collect();
        table = table.filter(&keep).map_err(table_error)?;
        ctx.check_cancelled()?;
    }

    for &kind in o.dedup.kinds() {
        let normalized = kind == Dedup::Normalized;
        let keep = unique(&texts(&table), &o.dedup_fields, normalized);
        let removed = keep.iter().filter(|k| !**k).count();
        table = table.filter(&keep).map_err(table_error)?;
        let rule = if normalized {
            "dedup_normalized"
        } else {
            "dedup_exact"
        };
        rules.push(RuleCount::removed(rule, removed));
        ctx.check_cancelled()?;
    }

    if let Some(near) = &o.near_dedup {
        (ctx.progress)(&format!(
            "near-duplicate search over {} rows",
            table.height()
        ));
        let hasher = MinHasher::new(near.num_perm, near.ngram, near.seed);
        let (bands, band_rows) = match near.bands {
            Some(b) => (b, near.num_perm / b),
            None => minhash::optimal_bands(near.threshold, near.num_perm),
        };
        let signatures: Vec<Vec<u64>> = texts(&table)
            .par_iter()
            .map(|row| {
                let text: Vec<String> = o
                    .dedup_fields
                    .iter()
                    .map(|f| {
                        let mut key = String::new();
                        text::dedup_key_into(f.of(row), &mut key);
                        key
                    })
                    .collect();
                hasher.signature(&text.join("\n"))
            })
            .collect();
        ctx.check_cancelled()?;
        let mut lsh = Lsh::new(bands, band_rows, near.threshold);
        let keep: Vec<bool> = signatures
            .into_iter()
            .map(|s| !lsh.is_duplicate(s))
            .collect();
        let removed = keep.iter().filter(|k| !**k).count();
        table = table.filter(&keep).map_err(table_error)?;
        rules.push(
            RuleCount::removed("near_dedup", removed)
                .with("bands", bands)
                .with("rows_per_band", band_rows),
        );
    }
    Ok((table, rules))
}

/// Every row's text fields.
fn texts(table: &Examples) -> Vec<Texts<'_>> {
    table
        .text(schema::INPUT)
        .into_iter()
        .zip(table.text(schema::OUTPUT))
        .map(|(input, output)| Texts { input, output })
        .collect()
}

/// Applies the edits to whole rows; returns how many rows each changed.
fn edit_rows(edits: &[Edit], rows: &mut [Example]) -> Vec<usize> {
    let changed: Vec<Vec<bool>> = rows
        .par_iter_mut()
        .map(|row| edits.iter().map(|edit| edit.apply(row)).collect())
        .collect();
    (0..edits.len())
        .map(|i| changed.iter().filter(|c| c[i]).count())
        .collect()
}

/// Applies the edits to the `input` and `output` columns of a table without chat rows, the same
/// as [`Edit::apply`] row by row: each edit sees the text the edits before it left. A column is
/// rebuilt only when some row of it changed. Returns how many rows each edit changed.
fn edit_columns(edits: &[Edit], table: &mut Examples) -> Result<Vec<usize>, StageError> {
    // Each text goes through the edits in one visit (up to 64 at a time), which record what they
    // changed one bit each: a row counts for an edit when either of its texts has that bit.
    let height = table.height();
    let mut edited: [Vec<Option<String>>; 2] = [vec![None; height], vec![None; height]];
    let mut counts = Vec::with_capacity(edits.len());
    {
        let originals = [table.text(schema::INPUT), table.text(schema::OUTPUT)];
        for group in edits.chunks(64) {
            let mut masks: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
            for ((now, original), masks) in edited.iter_mut().zip(&originals).zip(&mut masks) {
                let done: Vec<(Option<String>, u64)> = now
                    .par_iter()
                    .zip(original)
                    .map(|(now, original)| {
                        let mut new: Option<String> = None;
                        let mut bits = 0u64;
                        for (k, edit) in group.iter().enumerate() {
                            let text = new.as_deref().or(now.as_deref()).unwrap_or(original);
                            if let Some(text) = edit.rewrite(text) {
                                new = Some(text);
                                bits |= 1 << k;
                            }
                        }
                        (new, bits)
                    })
                    .collect();
                *masks = Vec::with_capacity(height);
                for (now, (new, bits)) in now.iter_mut().zip(done) {
                    if new.is_some() {
                        *now = new;
                    }
                    masks.push(bits);
                }
            }
            for k in 0..group.len() {
                let count = masks[0]
                    .iter()
                    .zip(&masks[1])
                    .filter(|(a, b)| ((**a | **b) >> k) & 1 == 1)
                    .count();
                counts.push(count);
            }
        }
    }
    for (name, new) in [schema::INPUT, schema::OUTPUT].into_iter().zip(edited) {
        if new.iter().any(Option::is_some) {
            table.patch_text(name, &new).map_err(table_error)?;
        }
    }
    Ok(counts)
}

/// Which rows to keep so that no two kept rows have the same `fields` (compared exactly, or by
/// their [`text::dedup_key`]); the first of equal rows is kept.
fn unique(rows: &[Texts<'_>], fields: &[TextField], normalized: bool) -> Vec<bool> {
    // A fast 64-bit hash of each row's fields picks the candidates; rows whose hashes are equal
    // are then compared field by field, so that only true duplicates are removed.
    let state = PlFixedStateQuality::default();
    let hashes: Vec<u64> = rows
        .par_iter()
        .map_init(String::new, |key, row| {
            let mut hasher = state.build_hasher();
            for field in fields {
                let text = field.of(row);
                let text = if normalized {
                    text::dedup_key_into(text, key);
                    key.as_str()
                } else {
                    text
                };
                // Length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
                hasher.write_u64(text.len() as u64);
                hasher.write(text.as_bytes());
            }
            hasher.finish()
        })
        .collect();
    let same = |a: &Texts<'_>, b: &Texts<'_>| {
        fields.iter().all(|f| {
            if normalized {
                text::dedup_key(f.of(a)) == text::dedup_key(f.of(b))
            } else {
                f.of(a) == f.of(b)
            }
        })
    };
    // Rows by hash, then by position: rows that may be equal end up side by side, in order. A
    // sort, in parallel, rather than a hash map filled row by row on one thread.
    let mut order: Vec<(u64, usize)> = hashes.into_iter().zip(0..).collect();
    order.par_sort_unstable();
    let groups: Vec<&[(u64, usize)]> = order
        .chunk_by(|a, b| a.0 == b.0)
        .filter(|group| group.len() > 1)
        .collect();
    // In each group of equal hashes, a row is a duplicate when it equals a kept row before it;
    // almost always the group is one row and its duplicates.
    let duplicates: Vec<usize> = groups
        .par_iter()
        .flat_map_iter(|group| {
            let mut kept: Vec<usize> = Vec::new();
            let mut duplicates = Vec::new();
            for &(_, i) in *group {
                if kept.iter().any(|&j| same(&rows[j], &rows[i])) {
                    duplicates.push(i);
                } else {
                    kept.push(i);
                }
            }
            duplicates
        })
        .collect();
    let mut keep = vec![true; rows.len()];
    for i in duplicates {
        keep[i] = false;
    }
    keep
}

/// A rule that rewrites text.
enum Edit {
    Normalize,
    Strip(String, Regex),
    Scrub(Scrub, Regex),
}

impl Edit {
    fn rewrite(&self, text: &str) -> Option<String> {
        use std::borrow::Cow;
        let out = match self {
            Edit::Normalize => match text::normalize_cow(text) {
                // Already normalised: nothing to copy or compare.
                Cow::Borrowed(_) => return None,
                Cow::Owned(s) => s,
            },
            Edit::Strip(_, regex) => match regex.replace_all(text, "") {
                Cow::Borrowed(_) => return None,
                Cow::Owned(s) => match text::whitespace_cow(&s) {
                    Cow::Borrowed(_) => s,
                    Cow::Owned(w) => w,
                },
            },
            Edit::Scrub(kind, regex) => regex.replace_all(text, kind.placeholder()).into_owned(),
        };
        (out != text).then_some(out)
    }

    /// Rewrites a row's texts; `true` if anything changed. A chat row's turns are rewritten and
    /// its `input` and `output` rendered from them again, so that they stay consistent.
    fn apply(&self, row: &mut Example) -> bool {
        let mut changed = false;
        if let Some(messages) = &mut row.messages {
            for m in messages.iter_mut() {
                if let Some(new) = self.rewrite(&m.content) {
                    m.content = new;
                    changed = true;
                }
            }
            if schema::last_assistant(row.messages.as_deref().unwrap_or_default()).is_some() {
                if changed {
                    schema::render_chat(row);
                }
                return changed;
            }
        }
        for text in [&mut row.input, &mut row.output] {
            if let Some(new) = self.rewrite(text) {
                *text = new;
                changed = true;
            }
        }
        changed
    }

    fn count(&self, count: usize) -> RuleCount {
        match self {
            Edit::Normalize => RuleCount::changed("normalize", count),
            Edit::Strip(pattern, _) => {
                RuleCount::changed("strip", count).with("pattern", pattern.clone())
            }
            Edit::Scrub(kind, _) => RuleCount::changed(kind.rule(), count),
        }
    }
}

#[derive(Clone, Copy)]
enum Bound {
    MinChars,
    MaxChars,
    MinWords,
    MaxWords,
}

/// A rule that removes rows.
enum Filter {
    Regex(String, Regex),
    EmptyOutput,
    Length(Bound, usize, Vec<TextField>),
}

impl Filter {
    fn keeps(&self, row: &Texts<'_>) -> bool {
        match self {
            Filter::Regex(_, regex) => !regex.is_match(row.input) && !regex.is_match(row.output),
            Filter::EmptyOutput => !row.output.trim().is_empty(),
            Filter::Length(bound, limit, fields) => fields.iter().all(|f| {
                let text = f.of(row);
                match bound {
                    Bound::MinChars => text::chars_at_least(text, *limit),
                    Bound::MaxChars => text::chars_at_most(text, *limit),
                    Bound::MinWords => text::word_count(text) >= *limit,
                    Bound::MaxWords => text::word_count(text) <= *limit,
                }
            }),
        }
    }

    fn count(&self, count: usize) -> RuleCount {
        match self {
            Filter::Regex(pattern, _) => {
                RuleCount::removed("drop_regex", count).with("pattern", pattern.clone())
            }
            Filter::EmptyOutput => RuleCount::removed("drop_empty_output", count),
            Filter::Length(bound, limit, _) => {
                let name = match bound {
                    Bound::MinChars => "min_chars",
                    Bound::MaxChars => "max_chars",
                    Bound::MinWords => "min_words",
                    Bound::MaxWords => "max_words",
                };
                RuleCount::removed(name, count).with("limit", *limit)
            }
        }
    }
}

fn validate(o: &CleanOptions) -> Vec<OptionError> {
    let mut errors: Vec<OptionError> = options::workspace_path(&["data"], &o.data)
        .into_iter()
        .collect();
    for key in ["strip", "drop_regex"] {
        let patterns = if key == "strip" {
            &o.strip
        } else {
            &o.drop_regex
        };
        for (i, p) in patterns.iter().enumerate() {
            if let Err(e) = Regex::new(p) {
                let index = i.to_string();
                let message = e.to_string();
                // The regex crate's message spans several lines; its last line says what is wrong.
                let reason = message.lines().last().unwrap_or(&message).trim();
                let reason = reason.strip_prefix("error: ").unwrap_or(reason);
                errors.push(OptionError::new(
                    &[key, &index],
                    format!("bad regex `{p}`: {reason}"),
                ));
            }
        }
    }
    for (min, max, min_key, max_key) in [
        (o.min_chars, o.max_chars, "min_chars", "max_chars"),
        (o.min_words, o.max_words, "min_words", "max_words"),
    ] {
        if let (Some(min), Some(max)) = (min, max)
            && min > max
        {
            errors.push(OptionError::new(
                &[min_key],
                format!(
                    "`{min_key}` ({min}) is above `{max_key}` ({max}); every row would be dropped"
                ),
            ));
        }
    }
    let any_length = [o.min_chars, o.max_chars, o.min_words, o.max_words]
        .iter()
        .any(Option::is_some);
    if any_length && o.length_fields.is_empty() {
        errors.push(
            OptionError::new(&["length_fields"], "no fields to measure")
                .hint("use `[input]`, `[output]` or `[input, output]`"),
        );
    }
    if (!o.dedup.kinds().is_empty() || o.near_dedup.is_some()) && o.dedup_fields.is_empty() {
        errors.push(
            OptionError::new(&["dedup_fields"], "no fields to compare")
                .hint("use `[input]` or `[input, output]`"),
        );
    }
    if let Some(near) = &o.near_dedup {
        if !(near.threshold > 0.0 && near.threshold <= 1.0) {
            errors.push(OptionError::new(
                &["near_dedup", "threshold"],
                format!("threshold {} is not in (0, 1]", near.threshold),
            ));
        }
        if near.num_perm == 0 || near.num_perm > 1024 {
            errors.push(OptionError::new(
                &["near_dedup", "num_perm"],
                format!("num_perm {} is not in 1..=1024", near.num_perm),
            ));
        }
        if near.ngram == 0 {
            errors.push(OptionError::new(
                &["near_dedup", "ngram"],
                "ngram must be at least 1",
            ));
        }
        if let Some(bands) = near.bands
            && (bands == 0 || bands > near.num_perm)
        {
            errors.push(
                OptionError::new(
                    &["near_dedup", "bands"],
                    format!("bands {bands} is not in 1..={}", near.num_perm),
                )
                .hint("leave it out to choose it from `threshold`"),
            );
        }
    }
    errors
}

#[cfg(test)]
mod tests;
