//! `collect`: reads source files (and pinned URLs) in the formats people fine-tune from and writes
//! them as one example file.

use std::path::Path;

use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_stage::{OptionError, OutputSpec, StageContext, StageError, StageKind, StageReport};

use crate::fetch::{self, Pin};
use crate::format::{self, Format, TEXT, TextMode};
use crate::options;
use crate::pairs::{Pair, PairNames};
use crate::schema::Example;
use crate::stats::{RuleCount, Stats};
use crate::style::{Fields, Mapping, RowError, Style};
use crate::table::{ExampleColumns, RowTexts};
use crate::{DATA, STATS, data_outputs, short_id};

/// Options of `collect`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectOptions {
    /// The sources to read, in order; their rows are written in this order. Each is a `path`
    /// (a workspace-relative file or glob) or a `url` pinned by a digest.
    pub sources: Vec<Source>,
    /// The shape of the records, for every source that does not set its own: `pairs`
    /// (default), `openai-chat`, `alpaca`, `sharegpt` or `classification`.
    #[serde(default)]
    pub style: Style,
    /// Which record field fills each column, for every source that does not set its own, e.g.
    /// `{input: question, output: answer}`.
    #[serde(default)]
    pub fields: Fields,
    /// What a malformed line or record does: `fail` (default) stops with its file and line;
    /// `skip` leaves it out and counts it in `stats.json` and the run summary.
    #[serde(default)]
    pub on_error: OnError,
}

/// One source of examples.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {
        "required": ["path"],
        "not": {"anyOf": [{"required": ["url"]}, {"required": ["sha256"]}, {"required": ["blake3"]}]}
    },
    {"required": ["url"], "anyOf": [{"required": ["sha256"]}, {"required": ["blake3"]}]}
]))]
pub struct Source {
    /// A workspace-relative file or glob (`data/support/*.jsonl`, `data/**/*.csv`). A glob's
    /// matches are read in sorted order; hidden files match only a pattern that names the dot.
    #[serde(default)]
    pub path: Option<String>,
    /// An `https://`, `http://` or `file://` URL, downloaded into the stage's work directory.
    /// It must be pinned by `sha256` or `blake3`, and the download must match.
    #[serde(default)]
    pub url: Option<String>,
    /// The SHA-256 of the file at `url` (64 hex digits).
    #[serde(default)]
    pub sha256: Option<String>,
    /// The BLAKE3 of the file at `url` (64 hex digits).
    #[serde(default)]
    pub blake3: Option<String>,
    /// The file format; by default from the file extension (`.jsonl`/`.ndjson`, `.json`,
    /// `.csv`, `.tsv`/`.tab`, `.parquet`/`.pq`, `.txt`/`.text`/`.md`), looking through a `.gz`
    /// or `.zst` suffix: a gzip or zstd file (known by its first bytes) is decompressed first.
    #[serde(default)]
    pub format: Option<Format>,
    /// For `format: text`: `line` (default, one example per non-blank line) or `file` (one
    /// example per file).
    #[serde(default)]
    pub text_mode: TextMode,
    /// For `format: json`: where in the document the array of records is, when it is not the
    /// document itself: a key (`data`), or a dotted path (`data.rows`).
    #[serde(default)]
    pub records: Option<String>,
    /// The shape of this source's records; overrides the stage's `style`. Text sources have no
    /// style: each example's `input` is the text and its `output` is empty.
    #[serde(default)]
    pub style: Option<Style>,
    /// Field mapping for this source; its keys override the stage's `fields` key by key.
    #[serde(default)]
    pub fields: Option<Fields>,
}

impl Source {
    /// How to read this source's files.
    fn reading(&self) -> format::Reading<'_> {
        format::Reading {
            text_mode: self.text_mode,
            records: self.records.as_deref(),
        }
    }
}

/// What to do with a malformed line or record.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Stop with an error naming the file and line.
    #[default]
    Fail,
    /// Leave it out and count it.
    Skip,
}

impl Source {
    fn pin(&self) -> Option<Pin> {
        match (&self.sha256, &self.blake3) {
            (Some(h), _) => Some(Pin::Sha256(h.to_lowercase())),
            (None, Some(h)) => Some(Pin::Blake3(h.to_lowercase())),
            (None, None) => None,
        }
    }
}

/// The `collect` stage kind.
pub struct Collect;

impl StageKind for Collect {
    fn name(&self) -> &'static str {
        "collect"
    }

    fn version(&self) -> u32 {
        crate::KIND_VERSION
    }

    fn description(&self) -> &'static str {
        "read JSONL, JSON, CSV, Parquet or text sources (and pinned URLs) into the example schema"
    }

    fn outputs(&self) -> Vec<OutputSpec> {
        data_outputs()
    }

    fn schema(&self) -> serde_json::Value {
        options::schema::<CollectOptions>()
    }

    fn check(&self, with: &serde_json::Value) -> Vec<OptionError> {
        match options::parse::<CollectOptions>(with) {
            Ok(o) => validate(&o),
            Err(e) => vec![e],
        }
    }

    fn reads(&self, with: &serde_json::Value, workspace: &Path) -> Result<Vec<String>, StageError> {
        let options: CollectOptions = options::parse_for_run(with)?;
        let mut files = Vec::new();
        for source in &options.sources {
            if let Some(pattern) = &source.path {
                files.extend(expand(workspace, pattern)?);
            }
        }
        files.sort();
        files.dedup();
        Ok(files)
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<StageReport, StageError> {
        crate::in_pool(|| execute(ctx))
    }
}

fn execute(ctx: &StageContext<'_>) -> Result<StageReport, StageError> {
    let options: CollectOptions = options::parse_for_run(ctx.with)?;
    let mut rows = ExampleColumns::default();
    let mut stats = Stats::default();
    let mut totals = Totals::default();
    let mut files = Vec::new();

    for (i, source) in options.sources.iter().enumerate() {
        let mapping = Mapping {
            style: source.style.unwrap_or(options.style),
            fields: source
                .fields
                .as_ref()
                .map_or_else(|| options.fields.clone(), |f| f.or(&options.fields)),
        };
        for (file, shown) in locate(ctx, source)? {
            ctx.check_cancelled()?;
            let format = match source.format {
                Some(f) => f,
                None => Format::infer(&shown).ok_or_else(|| {
                    StageError::failed(format!(
                        "cannot tell the format of {shown} from its name; set `format` in source {}",
                        i + 1
                    ))
                })?,
            };
            let before = totals;
            let mut file_reader = FileReader {
                shown: &shown,
                format,
                mapping: &mapping,
                on_error: options.on_error,
                kept: 0,
                first_missing: None,
            };
            match PairNames::new(&mapping).filter(|_| format == Format::Jsonl) {
                Some(names) => {
                    let bytes = format::map_bytes(&file, &shown)?;
                    let lines = format::jsonl_lines(&bytes);
                    rows.reserve(lines.len());
                    // Parsing a batch (in parallel) overlaps with adding the one before it.
                    let mut parsed: Option<ParsedBatch<'_, '_>> = None;
                    for batch in lines.chunks(format::BATCH).map(Some).chain([None]) {
                        ctx.check_cancelled()?;
                        let (added, next) = rayon::join(
                            || match parsed.take() {
                                Some((lines, parsed)) => {
                                    file_reader.add_pairs(lines, parsed, &mut rows, &mut totals)
                                }
                                None => Ok(()),
                            },
                            || batch.map(|b| (b, parse_pairs(&names, &mapping, &shown, b))),
                        );
                        added?;
                        parsed = next;
                    }
                }
                None => format::read(&file, &shown, format, &source.reading(), &mut |records| {
                    ctx.check_cancelled()?;
                    file_reader.add(&records, &mut rows, &mut totals)
                })?,
            }
            file_reader.finish()?;
            let kept = totals.rows_out - before.rows_out;
            let skipped = totals.skipped() - before.skipped();
            (ctx.progress)(&format!("{shown}: {kept} rows"));
            let mut entry = serde_json::Map::new();
            entry.insert("source".into(), shown.into());
            entry.insert("rows".into(), kept.into());
            if options.on_error == OnError::Skip {
                entry.insert("skipped".into(), skipped.into());
            }
            files.push(serde_json::Value::Object(entry));
        }
    }

    let mut table = rows
        .finish()
        .map_err(|e| StageError::failed(format!("cannot build the examples table: {e}")))?;
    table.write(ctx.output(DATA)?)?;
    stats
        .set("rows_in", totals.rows_in)
        .set("rows_out", totals.rows_out)
        .set("sources", files.clone());
    let mut report = StageReport::default();
    report
        .metrics
        .insert("rows_out".into(), totals.rows_out as f64);
    report
        .metrics
        .insert("rows_in".into(), totals.rows_in as f64);
    report.metrics.insert("files".into(), files.len() as f64);
    if options.on_error == OnError::Skip {
        stats
            .set("skipped", totals.skipped())
            .rule(RuleCount::removed("skip_malformed", totals.malformed))
            .rule(RuleCount::removed("skip_missing_field", totals.missing));
        report
            .metrics
            .insert("skipped".into(), totals.skipped() as f64);
    }
    stats.write(ctx.output(STATS)?)?;
    Ok(report)
}

#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    rows_in: usize,
    rows_out: usize,
    malformed: usize,
    missing: usize,
}

impl Totals {
    fn skipped(&self) -> usize {
        self.malformed + self.missing
    }
}

/// Turns one file's records into examples, stopping at or skipping the bad ones.
struct FileReader<'a> {
    shown: &'a str,
    format: Format,
    mapping: &'a Mapping,
    on_error: OnError,
    kept: usize,
    first_missing: Option<String>,
}

impl FileReader<'_> {
    fn add(
        &mut self,
        records: &[format::Record],
        rows: &mut ExampleColumns,
        totals: &mut Totals,
    ) -> Result<(), StageError> {
        // Mapping records is independent per record: in parallel, in order.
        let examples: Vec<Option<Result<Example, RowError>>> = records
            .par_iter()
            .map(|record| map_record(self.format, self.mapping, record))
            .collect();
        for (record, example) in records.iter().zip(examples) {
            self.push(record, example, rows, totals)?;
        }
        Ok(())
    }

    /// Lines of JSON Lines in the `pairs` style, parsed by [`parse_pairs`].
    fn add_pairs(
        &mut self,
        lines: &[(u64, &[u8])],
        parsed: Vec<PairLine<'_>>,
        rows: &mut ExampleColumns,
        totals: &mut Totals,
    ) -> Result<(), StageError> {
        let shown = self.shown;
        for (&(n, _), line) in lines.iter().zip(parsed) {
            match line {
                PairLine::Fast(pair, derived) => {
                    totals.rows_in += 1;
                    rows.push_texts(&RowTexts {
                        id: derived
                            .as_deref()
                            .or(pair.id.as_deref())
                            .unwrap_or_default(),
                        input: &pair.input,
                        output: &pair.output,
                        label: pair.label.as_deref(),
                        source: shown,
                        source_row: n,
                    });
                    self.kept += 1;
                    totals.rows_out += 1;
                }
                PairLine::General(general) => {
                    let (record, example) = *general;
                    self.push(&record, example, rows, totals)?;
                }
            }
        }
        Ok(())
    }

    /// Adds one record's example, or stops at or counts a bad record.
    fn push(
        &mut self,
        record: &format::Record,
        example: Option<Result<Example, RowError>>,
        rows: &mut ExampleColumns,
        totals: &mut Totals,
    ) -> Result<(), StageError> {
        let shown = self.shown;
        totals.rows_in += 1;
        let at = |message: &str| format!("{shown}{}: {message}", record.place);
        let example = match (example, &record.fields) {
            (Some(example), _) => example,
            (None, Err(message)) => match self.on_error {
                OnError::Fail => return Err(StageError::failed(at(message))),
                OnError::Skip => {
                    totals.malformed += 1;
                    return Ok(());
                }
            },
            (None, Ok(_)) => unreachable!("a record with fields is mapped"),
        };
        let mut example = match example {
            Ok(e) => e,
            Err(e) if self.on_error == OnError::Fail => {
                return Err(StageError::failed(at(e.message())));
            }
            Err(RowError::Missing(message)) => {
                totals.missing += 1;
                self.first_missing.get_or_insert_with(|| at(&message));
                return Ok(());
            }
            Err(RowError::Bad(_)) => {
                totals.malformed += 1;
                return Ok(());
            }
        };
        example.source = shown.to_owned();
        example.source_row = record.place.row();
        if example.id.is_empty() {
            example.id = derived_id(shown, example.source_row);
        }
        rows.push(example);
        self.kept += 1;
        totals.rows_out += 1;
        Ok(())
    }

    /// Skipping rows that lack a field is for the odd bad row; a mapping that matches no row at
    /// all is a mistake in the workflow.
    fn finish(self) -> Result<(), StageError> {
        match self.first_missing {
            Some(first) if self.kept == 0 => Err(StageError::failed(format!(
                "{first} (no record of {} has it)",
                self.shown
            ))),
            _ => Ok(()),
        }
    }
}

/// The example a record makes, `None` for a malformed record.
fn map_record(
    format: Format,
    mapping: &Mapping,
    record: &format::Record,
) -> Option<Result<Example, RowError>> {
    let fields = record.fields.as_ref().ok()?;
    Some(if format == Format::Text {
        let text = fields
            .get(TEXT)
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        Ok(Example {
            input: text.to_owned(),
            ..Example::default()
        })
    } else {
        mapping.example(fields)
    })
}

/// Parses lines of JSON Lines in the `pairs` style, in parallel: each through the fast path of
/// [`crate::pairs`] when it can, else as a record like any other.
fn parse_pairs<'a>(
    names: &PairNames<'_>,
    mapping: &Mapping,
    shown: &str,
    lines: &[(u64, &'a [u8])],
) -> Vec<PairLine<'a>> {
    lines
        .par_iter()
        .map(|&(n, line)| match names.parse(line) {
            Some(pair) => {
                let derived = pair
                    .id
                    .as_ref()
                    .is_none_or(|id| id.is_empty())
                    .then(|| derived_id(shown, n));
                PairLine::Fast(pair, derived)
            }
            None => {
                let record = format::jsonl_record(n, line);
                let example = map_record(Format::Jsonl, mapping, &record);
                PairLine::General(Box::new((record, example)))
            }
        })
        .collect()
}

/// A batch of lines of JSON Lines (with their line numbers) and what [`parse_pairs`] made of them.
type ParsedBatch<'l, 'b> = (&'l [(u64, &'b [u8])], Vec<PairLine<'b>>);

/// A line of JSON Lines in the `pairs` style, parsed.
enum PairLine<'a> {
    /// Through the fast path: the mapped fields, and the id to give the row when the record
    /// has none.
    Fast(Pair<'a>, Option<String>),
    /// Through the general path (rare): the record and its example, or why there is none.
    General(Box<(format::Record, Option<Result<Example, RowError>>)>),
}

/// The id of a row whose record has none: from its source and row.
fn derived_id(shown: &str, row: u64) -> String {
    short_id(&format!("{shown}\n{row}"))
}

/// The files of a source: (absolute path, name shown in messages and the `source` column).
fn locate(
    ctx: &StageContext<'_>,
    source: &Source,
) -> Result<Vec<(std::path::PathBuf, String)>, StageError> {
    if let Some(pattern) = &source.path {
        return Ok(expand(ctx.workspace, pattern)?
            .into_iter()
            .map(|rel| (ctx.path(&rel), rel))
            .collect());
    }
    let (Some(url), Some(pin)) = (&source.url, source.pin()) else {
        return Err(StageError::failed(
            "a source needs `path`, or `url` with `sha256` or `blake3`",
        ));
    };
    (ctx.progress)(&format!("fetching {url}"));
    let file = fetch::fetch(url, &pin, ctx.work_dir)?;
    // The format comes from the URL's path, without its query.
    let name = url.split(['?', '#']).next().unwrap_or(url).to_owned();
    Ok(vec![(file, name)])
}

fn has_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// The workspace-relative files a path or glob names, sorted.
pub fn expand(workspace: &Path, pattern: &str) -> Result<Vec<String>, StageError> {
    if !has_glob(pattern) {
        let full = workspace.join(pattern);
        return match std::fs::metadata(&full) {
            Ok(m) if m.is_file() => Ok(vec![pattern.trim_start_matches("./").to_owned()]),
            Ok(_) => Err(StageError::failed(format!(
                "source `{pattern}` is a directory; name its files with a glob, like `{}/*.jsonl`",
                pattern.trim_end_matches('/')
            ))),
            Err(_) => Err(StageError::failed(format!("source `{pattern}` not found"))),
        };
    }
    let root = workspace.to_str().ok_or_else(|| {
        StageError::failed(format!(
            "the workspace path {} is not UTF-8",
            workspace.display()
        ))
    })?;
    let full = format!("{}/{pattern}", glob::Pattern::escape(root));
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let entries = glob::glob_with(&full, options)
        .map_err(|e| StageError::failed(format!("bad glob `{pattern}`: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| StageError::failed(format!("cannot read a match of `{pattern}`: {e}")))?;
        if !path.is_file() {
            continue;
        }
        let rel = path.strip_prefix(workspace).unwrap_or(&path);
        let rel: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        files.push(rel.join("/"));
    }
    if files.is_empty() {
        return Err(StageError::failed(format!("no files match `{pattern}`")));
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn validate(o: &CollectOptions) -> Vec<OptionError> {
    let mut errors = Vec::new();
    if o.sources.is_empty() {
        errors.push(
            OptionError::new(&["sources"], "no sources")
                .hint("add one, like `- path: data/train.jsonl`"),
        );
    }
    for (i, s) in o.sources.iter().enumerate() {
        let index = i.to_string();
        let at = |key: &str| -> Vec<String> {
            let mut p = vec!["sources".to_owned(), index.clone()];
            if !key.is_empty() {
                p.push(key.to_owned());
            }
            p
        };
        let error = |key: &str, message: String| OptionError {
            path: at(key),
            message,
            hint: None,
        };
        match (&s.path, &s.url) {
            (Some(_), Some(_)) => {
                errors.push(error("", "a source has `path` or `url`, not both".into()));
            }
            (None, None) => errors.push(
                error("", "a source needs `path` or `url`".into())
                    .hint("add `path: data/train.jsonl`"),
            ),
            (Some(path), None) => {
                errors.extend(options::workspace_path(&["sources", &index, "path"], path));
                for (key, value) in [("sha256", &s.sha256), ("blake3", &s.blake3)] {
                    if value.is_some() {
                        errors.push(error(key, format!("`{key}` pins a `url` source")));
                    }
                }
            }
            (None, Some(url)) => {
                if !["https://", "http://", "file://"]
                    .iter()
                    .any(|scheme| url.starts_with(scheme))
                {
                    errors.push(error(
                        "url",
                        format!("`{url}` is not an https://, http:// or file:// URL"),
                    ));
                }
                match (&s.sha256, &s.blake3) {
                    (None, None) => errors.push(
                        error("url", "a URL source must be pinned by a digest".into())
                            .hint("add `sha256: <64 hex digits>` (or `blake3:`)"),
                    ),
                    (Some(_), Some(_)) => errors.push(error(
                        "blake3",
                        "pin a URL by `sha256` or by `blake3`, not both".into(),
                    )),
                    _ => {}
                }
                for (key, value) in [("sha256", &s.sha256), ("blake3", &s.blake3)] {
                    if let Some(v) = value
                        && !fetch::is_digest(v)
                    {
                        errors.push(error(key, format!("`{v}` is not 64 hex digits")));
                    }
                }
            }
        }
        let name = s.path.as_deref().or(s.url.as_deref()).unwrap_or_default();
        let name = name.split(['?', '#']).next().unwrap_or(name);
        let last = name.rsplit('/').next().unwrap_or_default();
        // `data/*` may match files of known formats; `data/a.xyz` never will.
        let inferred = Format::infer(last);
        if s.format.is_none() && last.contains('.') && !last.ends_with('*') && inferred.is_none() {
            errors.push(
                error("format", format!("cannot tell the format of `{name}`"))
                    .hint("set `format: jsonl` (or json, csv, tsv, parquet, text)"),
            );
        }
        if let (Some(_), Some(format)) = (&s.records, s.format.or(inferred))
            && format != Format::Json
        {
            errors.push(
                error("records", "`records` applies to JSON files".into()).hint(
                    "a JSON Lines, CSV, TSV, Parquet or text file holds its records directly",
                ),
            );
        }
    }
    errors
}

#[cfg(test)]
mod tests;
