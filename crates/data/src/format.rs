//! Reading one source file into records (JSON objects), whatever its file format, remembering
//! where each record came from so that errors can name the file and line.

use std::fmt;
use std::path::Path;

use polars::prelude::*;
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sluice_stage::StageError;

/// A source's file format.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON Lines: one JSON object per line (`.jsonl`, `.ndjson`). Blank lines are ignored.
    Jsonl,
    /// One JSON array of objects (`.json`).
    Json,
    /// CSV with a header row (`.csv`); every value is read as text.
    Csv,
    /// Tab-separated values with a header row (`.tsv`, `.tab`), quoted as CSV is; every value is
    /// read as text.
    Tsv,
    /// Parquet (`.parquet`, `.pq`).
    Parquet,
    /// Plain text (`.txt`, `.text`, `.md`): see `text_mode`. Each example's `input` is the
    /// text and its `output` is empty.
    Text,
}

impl Format {
    /// The format a file name implies, if any; a compressed file's (`a.jsonl.gz`, `a.csv.zst`)
    /// is its name's without the compression suffix.
    pub fn infer(name: &str) -> Option<Format> {
        let name = name.to_lowercase();
        let inner = [".gz", ".zst", ".zstd"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix));
        let ext = inner.unwrap_or(&name).rsplit_once('.').map(|(_, e)| e)?;
        if inner.is_some() && matches!(ext, "parquet" | "pq") {
            // Parquet compresses its pages itself; a compressed Parquet file is not read.
            return None;
        }
        Some(match ext {
            "jsonl" | "ndjson" => Format::Jsonl,
            "json" => Format::Json,
            "csv" => Format::Csv,
            "tsv" | "tab" => Format::Tsv,
            "parquet" | "pq" => Format::Parquet,
            "txt" | "text" | "md" => Format::Text,
            _ => return None,
        })
    }
}

/// How to read a source's files, beyond its format.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reading<'a> {
    /// For text files.
    pub text_mode: TextMode,
    /// For JSON files: the dotted path to the array of records.
    pub records: Option<&'a str>,
}

/// How a plain-text source is cut into examples.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TextMode {
    /// One example per non-blank line.
    #[default]
    Line,
    /// One example per file (its whole text, trimmed).
    File,
}

/// Where in its file a record sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Line(u64),
    Element(u64),
    CsvRecord { record: u64, line: u64 },
    Row(u64),
    File,
}

impl Place {
    /// The 1-based `source_row` of the example schema.
    pub fn row(self) -> u64 {
        match self {
            Place::Line(n) | Place::Element(n) | Place::Row(n) => n,
            Place::CsvRecord { record, .. } => record,
            Place::File => 1,
        }
    }
}

/// Formats as a suffix of the file name: `data/a.jsonl:7`, `data/a.json: element 3`.
impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Line(n) => write!(f, ":{n}"),
            Place::Element(n) => write!(f, ": element {n}"),
            Place::CsvRecord { line, .. } => write!(f, ":{line}"),
            Place::Row(n) => write!(f, ": row {n}"),
            Place::File => Ok(()),
        }
    }
}

/// One record of a source: a JSON object, or why it could not be read.
#[derive(Debug)]
pub struct Record {
    pub place: Place,
    pub fields: Result<Map<String, Value>, String>,
}

impl Record {
    fn ok(place: Place, fields: Map<String, Value>) -> Record {
        Record {
            place,
            fields: Ok(fields),
        }
    }

    fn malformed(place: Place, message: impl Into<String>) -> Record {
        Record {
            place,
            fields: Err(message.into()),
        }
    }
}

/// The key under which text sources put their text.
pub const TEXT: &str = "text";

/// Records handed to the caller at once: JSON Lines files are parsed in batches of this many
/// lines, so that a large file never holds all its parsed records in memory.
pub const BATCH: usize = 65_536;

/// Reads every record of a file, handing them to `each` in order, in batches. A file that cannot
/// be read at all (or a JSON array that does not parse) is an error; a bad line or record is a
/// malformed [`Record`], for the caller to stop at or skip.
pub fn read(
    path: &Path,
    shown: &str,
    format: Format,
    reading: &Reading<'_>,
    each: &mut dyn FnMut(Vec<Record>) -> Result<(), StageError>,
) -> Result<(), StageError> {
    let bytes = || map_bytes(path, shown);
    let text_mode = reading.text_mode;
    match format {
        Format::Jsonl => read_jsonl(&bytes()?, each),
        Format::Json => each(read_json(&bytes()?, shown, reading.records)?),
        Format::Csv => each(read_delimited(&bytes()?, shown, b',', "CSV")?),
        Format::Tsv => each(read_delimited(&bytes()?, shown, b'\t', "TSV")?),
        Format::Parquet => each(read_parquet(path, shown)?),
        Format::Text => each(read_text(&bytes()?, text_mode)),
    }
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// A whole source file, read into memory.
fn read_bytes(path: &Path, shown: &str) -> Result<Vec<u8>, StageError> {
    std::fs::read(path).map_err(|e| StageError::failed(format!("cannot read {shown}: {e}")))
}

/// A whole source file's bytes, mapped into memory where the file system allows it (no copy, and
/// no fresh memory for a file already in the page cache), read otherwise.
pub enum FileBytes {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(map) => map,
            FileBytes::Read(bytes) => bytes,
        }
    }
}

/// A whole source file: see [`FileBytes`]. A gzip or zstd file (told by its first bytes, not
/// its name) is decompressed.
#[allow(unsafe_code)]
pub fn map_bytes(path: &Path, shown: &str) -> Result<FileBytes, StageError> {
    let file = std::fs::File::open(path)
        .map_err(|e| StageError::failed(format!("cannot read {shown}: {e}")))?;
    // SAFETY: the map is read-only and lives no longer than this stage reads the file. Another
    // process truncating the file meanwhile would fault the reads (SIGBUS), as it would the
    // engine's own hashing of inputs, which maps them the same way; sluice never writes a source.
    let bytes = match unsafe { memmap2::Mmap::map(&file) } {
        Ok(map) => FileBytes::Mapped(map),
        // Empty files, pipes and file systems without mmap.
        Err(_) => FileBytes::Read(read_bytes(path, shown)?),
    };
    decompress(bytes, shown)
}

/// The bytes of a gzip (one member or several, as `cat a.gz b.gz` makes) or zstd stream; other
/// bytes as they are.
fn decompress(bytes: FileBytes, shown: &str) -> Result<FileBytes, StageError> {
    use std::io::Read;
    const GZIP: &[u8] = &[0x1f, 0x8b];
    const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
    let failed = |codec: &str, e: std::io::Error| {
        StageError::failed(format!("{shown}: not valid {codec}: {e}"))
    };
    let mut out = Vec::new();
    if bytes.starts_with(GZIP) {
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| failed("gzip", e))?;
    } else if bytes.starts_with(ZSTD) {
        zstd::stream::read::Decoder::new(&bytes[..])
            .and_then(|mut d| d.read_to_end(&mut out))
            .map_err(|e| failed("zstd", e))?;
    } else {
        return Ok(bytes);
    }
    Ok(FileBytes::Read(out))
}

/// Lines of a file with their 1-based numbers.
type Lines<'a> = Vec<(u64, &'a [u8])>;

/// The non-blank lines of a JSON Lines file, with their 1-based line numbers. The file is cut
/// into pieces that end after a newline, whose lines are found in parallel and then numbered.
pub fn jsonl_lines(bytes: &[u8]) -> Lines<'_> {
    const PIECE: usize = 1 << 20;
    let bytes = strip_bom(bytes);
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let cut = (start + PIECE).min(bytes.len());
        let end = memchr::memchr(b'\n', &bytes[cut..]).map_or(bytes.len(), |at| cut + at + 1);
        pieces.push(&bytes[start..end]);
        start = end;
    }
    let last = pieces.len().saturating_sub(1);
    let found: Vec<(u64, Lines<'_>)> = pieces
        .par_iter()
        .enumerate()
        .map(|(i, piece)| piece_lines(piece, i == last))
        .collect();
    let mut lines = Vec::with_capacity(found.iter().map(|(_, l)| l.len()).sum());
    let mut before = 0;
    for (newlines, piece) in found {
        lines.extend(piece.into_iter().map(|(n, line)| (before + n, line)));
        before += newlines;
    }
    lines
}

/// The non-blank lines of a piece of a file, numbered from 1, and how many newlines it has. Every
/// piece but the last ends with a newline; the last one's bytes after its last newline are a line
/// too.
fn piece_lines(piece: &[u8], is_last: bool) -> (u64, Lines<'_>) {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut newlines = 0;
    let tail = is_last.then_some(piece.len());
    for end in memchr::memchr_iter(b'\n', piece).chain(tail) {
        let line = &piece[start..end];
        start = end + 1;
        newlines += 1;
        if !line.iter().all(u8::is_ascii_whitespace) {
            lines.push((newlines, line));
        }
    }
    // The tail is not a newline.
    (newlines - u64::from(is_last), lines)
}

/// One line of a JSON Lines file as a record.
pub fn jsonl_record(n: u64, line: &[u8]) -> Record {
    let place = Place::Line(n);
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(m)) => Record::ok(place, m),
        Ok(other) => Record::malformed(
            place,
            format!("expected a JSON object, found {}", kind(&other)),
        ),
        Err(e) => Record::malformed(place, format!("malformed JSON: {}", json_error(&e))),
    }
}

fn read_jsonl(
    bytes: &[u8],
    each: &mut dyn FnMut(Vec<Record>) -> Result<(), StageError>,
) -> Result<(), StageError> {
    let lines = jsonl_lines(bytes);
    for batch in lines.chunks(BATCH) {
        // Parsing is the expensive part; rayon keeps the order.
        let records = batch
            .par_iter()
            .map(|&(n, line)| jsonl_record(n, line))
            .collect();
        each(records)?;
    }
    Ok(())
}

fn read_json(bytes: &[u8], shown: &str, records: Option<&str>) -> Result<Vec<Record>, StageError> {
    let mut value: Value = serde_json::from_slice(strip_bom(bytes)).map_err(|e| {
        StageError::failed(format!(
            "{shown}:{}:{}: malformed JSON: {}",
            e.line(),
            e.column(),
            json_message(&e)
        ))
    })?;
    if let Some(path) = records {
        let mut at = Vec::new();
        for key in path.split('.') {
            at.push(key);
            value = match value {
                Value::Object(mut fields) => fields.remove(key).ok_or_else(|| {
                    let mut keys: Vec<&String> = fields.keys().collect();
                    keys.sort();
                    let keys: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
                    StageError::failed(format!(
                        "{shown}: no `{}` for `records`; the object there has {}",
                        at.join("."),
                        if keys.is_empty() {
                            "no keys".to_owned()
                        } else {
                            keys.join(", ")
                        }
                    ))
                })?,
                other => {
                    return Err(StageError::failed(format!(
                        "{shown}: `records: {path}` goes into {}, not an object",
                        kind(&other)
                    )));
                }
            };
        }
    }
    let Value::Array(items) = value else {
        let hint = match (&value, records) {
            (Value::Object(fields), None) => {
                let mut arrays: Vec<&String> = fields
                    .iter()
                    .filter(|(_, v)| v.is_array())
                    .map(|(k, _)| k)
                    .collect();
                arrays.sort();
                match arrays.first() {
                    Some(key) => format!(
                        "; set `records: {key}` on the source to read the array under `{key}`"
                    ),
                    None => String::new(),
                }
            }
            _ => String::new(),
        };
        return Err(StageError::failed(format!(
            "{shown}: expected a JSON array of objects, found {}{hint}",
            kind(&value)
        )));
    };
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let place = Place::Element(i as u64 + 1);
            match item {
                Value::Object(m) => Record::ok(place, m),
                other => Record::malformed(
                    place,
                    format!("expected a JSON object, found {}", kind(&other)),
                ),
            }
        })
        .collect())
}

/// CSV (`delimiter` `,`) or TSV (`\t`), named `what` in errors.
fn read_delimited(
    bytes: &[u8],
    shown: &str,
    delimiter: u8,
    what: &str,
) -> Result<Vec<Record>, StageError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .delimiter(delimiter)
        .from_reader(strip_bom(bytes));
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| StageError::failed(format!("{shown}: cannot read the {what} header: {e}")))?
        .iter()
        .map(str::to_owned)
        .collect();
    let mut records = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut n = 0u64;
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                n += 1;
                let line = record.position().map_or(line, csv::Position::line);
                let place = Place::CsvRecord { record: n, line };
                let fields = headers
                    .iter()
                    .zip(record.iter())
                    .map(|(h, v)| (h.clone(), Value::String(v.to_owned())))
                    .collect();
                records.push(Record::ok(place, fields));
            }
            Err(e) => {
                n += 1;
                let line = e.position().map_or(line, csv::Position::line);
                let place = Place::CsvRecord { record: n, line };
                let message = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => {
                        format!(
                            "malformed {what} record: {len} fields, the header has {expected_len}"
                        )
                    }
                    csv::ErrorKind::Utf8 { .. } => format!("malformed {what} record: not UTF-8"),
                    _ => format!("malformed {what} record: {e}"),
                };
                records.push(Record::malformed(place, message));
                // An IO error would repeat forever; anything else leaves the reader past the record.
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    return Err(StageError::failed(format!("cannot read {shown}: {e}")));
                }
            }
        }
    }
    Ok(records)
}

fn read_text(bytes: &[u8], mode: TextMode) -> Vec<Record> {
    let bytes = strip_bom(bytes);
    let text_record = |place: Place, text: &[u8]| match std::str::from_utf8(text) {
        Ok(text) => {
            let mut m = Map::new();
            m.insert(TEXT.to_owned(), Value::String(text.trim().to_owned()));
            Record::ok(place, m)
        }
        Err(_) => Record::malformed(place, "not UTF-8 text"),
    };
    match mode {
        TextMode::File => vec![text_record(Place::File, bytes)],
        TextMode::Line => bytes
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
            .map(|(i, line)| text_record(Place::Line(i as u64 + 1), line))
            .collect(),
    }
}

fn read_parquet(path: &Path, shown: &str) -> Result<Vec<Record>, StageError> {
    let df = crate::parquet::read_frame(path, shown)?;
    let failed = |e: PolarsError| StageError::failed(format!("{shown}: {e}"));
    let mut columns = Vec::with_capacity(df.width());
    for col in df.columns() {
        let values = series_to_json(col.as_materialized_series()).map_err(failed)?;
        columns.push((col.name().to_string(), values));
    }
    let mut records = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let fields = columns
            .iter()
            .map(|(name, values)| (name.clone(), values[i].clone()))
            .collect();
        records.push(Record::ok(Place::Row(i as u64 + 1), fields));
    }
    Ok(records)
}

/// A column as JSON values: strings, numbers, booleans, lists and structs keep their shape;
/// anything else becomes its text.
fn series_to_json(s: &Series) -> PolarsResult<Vec<Value>> {
    Ok(match s.dtype() {
        DataType::String => s
            .str()?
            .iter()
            .map(|v| v.map_or(Value::Null, |v| Value::String(v.to_owned())))
            .collect(),
        DataType::Boolean => s
            .bool()?
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Bool))
            .collect(),
        DataType::Null => vec![Value::Null; s.len()],
        dt if dt.is_unsigned_integer() => s
            .cast(&DataType::UInt64)?
            .u64()?
            .iter()
            .map(|v| v.map_or(Value::Null, Value::from))
            .collect(),
        dt if dt.is_signed_integer() => s
            .cast(&DataType::Int64)?
            .i64()?
            .iter()
            .map(|v| v.map_or(Value::Null, Value::from))
            .collect(),
        dt if dt.is_float() => s
            .cast(&DataType::Float64)?
            .f64()?
            .iter()
            .map(|v| v.map_or(Value::Null, Value::from))
            .collect(),
        DataType::List(_) => {
            let mut out = Vec::with_capacity(s.len());
            for item in s.list()?.amortized_iter() {
                out.push(match item {
                    Some(inner) => Value::Array(series_to_json(inner.as_ref())?),
                    None => Value::Null,
                });
            }
            out
        }
        DataType::Struct(_) => {
            let ca = s.struct_()?;
            let fields: Vec<(String, Vec<Value>)> = ca
                .fields_as_series()
                .iter()
                .map(|f| Ok((f.name().to_string(), series_to_json(f)?)))
                .collect::<PolarsResult<_>>()?;
            let validity = s.is_not_null();
            (0..s.len())
                .map(|i| {
                    if validity.get(i) == Some(false) {
                        return Value::Null;
                    }
                    Value::Object(
                        fields
                            .iter()
                            .map(|(name, values)| (name.clone(), values[i].clone()))
                            .collect(),
                    )
                })
                .collect()
        }
        _ => s
            .cast(&DataType::String)?
            .str()?
            .iter()
            .map(|v| v.map_or(Value::Null, |v| Value::String(v.to_owned())))
            .collect(),
    })
}

/// serde_json's message without its "at line 1 column 7".
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" at line ") {
        Some((message, _)) => message.to_owned(),
        None => text,
    }
}

/// For a line of JSON Lines, which is always line 1 to serde_json: the message and column.
fn json_error(e: &serde_json::Error) -> String {
    format!("{} at column {}", json_message(e), e.column())
}

/// "an array", "a number": for messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines numbered one after another, as the pieces found in parallel must number them.
    fn lines_one_by_one(bytes: &[u8]) -> Vec<(u64, &[u8])> {
        let bytes = strip_bom(bytes);
        let mut lines = Vec::new();
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if !line.iter().all(u8::is_ascii_whitespace) {
                lines.push((i as u64 + 1, line));
            }
        }
        lines
    }

    #[test]
    fn lines_found_in_pieces_are_numbered_as_in_the_file() {
        let mut big = Vec::new();
        for i in 0..300_000 {
            match i % 7 {
                0 => big.extend_from_slice(b"\n"),
                1 => big.extend_from_slice(b"  \r\n"),
                _ => big.extend_from_slice(format!("{{\"n\": {i}}}\r\n").as_bytes()),
            }
        }
        let mut unterminated = big.clone();
        unterminated.extend_from_slice(b"{\"last\": true}");
        let mut with_bom = b"\xEF\xBB\xBF".to_vec();
        with_bom.extend_from_slice(&unterminated);
        let samples: [&[u8]; 9] = [
            b"",
            b"\n",
            b"{}",
            b"{}\n",
            b"\n\n{}\n \n{}",
            b"\xEF\xBB\xBF{}\n{}",
            &big,
            &unterminated,
            &with_bom,
        ];
        for bytes in samples {
            assert_eq!(jsonl_lines(bytes), lines_one_by_one(bytes));
        }
        assert!(big.len() > 2 << 20, "more than one piece");
    }
}
