//! Reading and writing example files as Parquet, byte for byte reproducibly: one chunk, fixed
//! row groups, fixed compression (LZ4), and nothing in the metadata that varies between
//! runs.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use polars::frame::chunk_df_for_writing;
use polars::io::parquet::write::get_encodings;
use polars::prelude::*;
use polars_parquet::parquet::encoding::Encoding;
use polars_parquet::write::{CompressedPage, Version, WriteOptions, array_to_columns, compress};
use rayon::prelude::*;
use sluice_stage::StageError;

use crate::handoff::FRAMES;
use crate::schema::{self, Example};

/// The codec of every page: LZ4 (the `LZ4_RAW` of the Parquet format), which never varies.
/// Every data stage reads its input and writes its output, so a pipeline compresses its data
/// once per stage. On the benchmark's 1,000,000 rows LZ4 took about 0.6 s less CPU than zstd at
/// level 1 over the four stages (about 40% less time compressing) for files about 1.6 times
/// larger (72 MB instead of 45 MB). pyarrow, polars, DuckDB and Spark read it.
const CODEC: ParquetCompression = ParquetCompression::Lz4Raw;

/// The statistics of a free-text column: its null count only. The minimum and maximum of ids,
/// prompts and answers prune nothing (every row group spans almost all of them), and finding them
/// compares every value.
const FREE_TEXT_STATISTICS: StatisticsOptions = StatisticsOptions {
    min_value: false,
    max_value: false,
    distinct_count: false,
    null_count: true,
    binary_statistics_truncate_length: None,
};

/// Rows per Parquet row group. Fixed, so that the file does not depend on how polars chunked the
/// frame.
const ROW_GROUP_ROWS: usize = 65_536;

/// Reads an example file written by a data stage (or by the user, in the example schema).
pub fn read_examples(path: &Path, shown: &str) -> Result<Vec<Example>, StageError> {
    let df = read_frame(path, shown)?;
    schema::from_frame(&df).map_err(|e| StageError::failed(format!("{shown}: {e}")))
}

/// Reads any Parquet file into a frame: the frame it was written from when this process wrote
/// it as examples and it has not been read since ([`crate::handoff`]).
pub fn read_frame(path: &Path, shown: &str) -> Result<DataFrame, StageError> {
    if let Some(df) = FRAMES.take(path) {
        return Ok(df);
    }
    let file =
        File::open(path).map_err(|e| StageError::failed(format!("cannot open {shown}: {e}")))?;
    ParquetReader::new(file)
        .finish()
        .map_err(|e| StageError::failed(format!("cannot read {shown} as parquet: {e}")))
}

/// Writes rows in the example schema.
pub fn write_examples(path: &Path, rows: &[Example]) -> Result<(), StageError> {
    let mut df = schema::to_frame(rows)
        .map_err(|e| StageError::failed(format!("cannot write {}: {e}", path.display())))?;
    write_examples_frame(path, &mut df)
}

/// Writes a frame in the example schema, and leaves it for the stage that reads the file next.
pub(crate) fn write_examples_frame(path: &Path, df: &mut DataFrame) -> Result<(), StageError> {
    write_frame(path, df, &schema::FREE_TEXT)?;
    FRAMES.leave(path, df);
    Ok(())
}

/// Writes a frame. It is made one chunk first, so that the row groups (and so the bytes) depend
/// only on the rows, never on how the frame happens to be chunked.
///
/// The string columns named in `plain` are written with plain encoding. polars tries dictionary
/// encoding on every string column, estimating its cardinality first: wasted work on free text
/// (ids, prompts, answers), whose values are almost all distinct.
///
/// Without `plain`, the bytes are those of polars' `ParquetWriter`; only the work is spread
/// differently. polars
/// encodes a row group's columns in parallel but compresses every page on the writing thread,
/// one row group after another; here a few row groups at a time are encoded and compressed in
/// parallel (compression is most of the time of a write), then written in order.
pub(crate) fn write_frame(
    path: &Path,
    df: &mut DataFrame,
    plain: &[&str],
) -> Result<(), StageError> {
    let failed = |e: &dyn std::fmt::Display| {
        StageError::failed(format!("cannot write {}: {e}", path.display()))
    };
    df.rechunk_mut_par();
    let groups = chunk_df_for_writing(df, ROW_GROUP_ROWS).map_err(|e| failed(&e))?;
    let compression = CODEC;
    let statistics = StatisticsOptions::default();
    let options = WriteOptions {
        statistics,
        version: Version::V1,
        compression: compression.into(),
        data_page_size: None,
    };
    let mut encodings = get_encodings(&groups.schema().to_arrow(CompatLevel::newest())).to_vec();
    let mut column_options = vec![options; encodings.len()];
    for (at, (name, dtype)) in groups.schema().iter().enumerate() {
        if plain.contains(&name.as_str()) && *dtype == DataType::String {
            encodings[at] = vec![Encoding::Plain];
            column_options[at].statistics = FREE_TEXT_STATISTICS;
        }
    }

    let file = File::create(path).map_err(|e| failed(&e))?;
    let mut out = BufWriter::new(file);
    let mut writer = ParquetWriter::new(&mut out)
        .with_compression(compression)
        .with_statistics(statistics)
        .batched(groups.schema())
        .map_err(|e| failed(&e))?;
    let types = writer.parquet_schema().fields().to_vec();
    let batches: Vec<_> = groups
        .iter_chunks(CompatLevel::newest(), false)
        .filter(|batch| !batch.is_empty())
        .collect();
    // A few row groups per thread at a time, so that only those are held compressed in memory.
    let window = 2 * rayon::current_num_threads().max(1);
    for batches in batches.chunks(window) {
        let row_groups = batches
            .par_iter()
            .map(|batch| {
                let mut columns = Vec::new();
                for (((array, type_), encoding), options) in batch
                    .columns()
                    .iter()
                    .zip(&types)
                    .zip(encodings.iter())
                    .zip(&column_options)
                {
                    for pages in array_to_columns(array, type_.clone(), *options, encoding)? {
                        let pages = pages
                            .map(|page| Ok(compress(page?, Vec::new(), options.compression)?))
                            .collect::<PolarsResult<Vec<CompressedPage>>>()?;
                        columns.push(pages);
                    }
                }
                Ok((batch.len() as u64, columns))
            })
            .collect::<PolarsResult<Vec<_>>>()
            .map_err(|e| failed(&e))?;
        for (rows, columns) in &row_groups {
            writer
                .write_row_group(*rows, columns)
                .map_err(|e| failed(&e))?;
        }
    }
    writer.finish().map_err(|e| failed(&e))?;
    out.flush().map_err(|e| failed(&e))?;
    Ok(())
}

/// A column of a table that is not in the example schema (an evaluation's predictions).
pub enum TableColumn {
    Text(Vec<String>),
    Number(Vec<f64>),
}

/// Writes a table of named columns, all of the same length, as deterministically as
/// [`write_examples`]. A NaN number is written as null.
pub fn write_table(path: &Path, columns: &[(&str, TableColumn)]) -> Result<(), StageError> {
    let failed = |e: &dyn std::fmt::Display| {
        StageError::failed(format!("cannot write {}: {e}", path.display()))
    };
    let height = columns.first().map_or(0, |(_, c)| match c {
        TableColumn::Text(v) => v.len(),
        TableColumn::Number(v) => v.len(),
    });
    let columns: Vec<Column> = columns
        .iter()
        .map(|(name, c)| match c {
            TableColumn::Text(v) => Column::new((*name).into(), v),
            TableColumn::Number(v) => {
                let v: Vec<Option<f64>> = v.iter().map(|x| (!x.is_nan()).then_some(*x)).collect();
                Column::new((*name).into(), v)
            }
        })
        .collect();
    let mut df = DataFrame::new(height, columns).map_err(|e| failed(&e))?;
    write_frame(path, &mut df, &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    /// Row groups compressed in parallel make the file polars' own writer makes, whatever the
    /// number of threads.
    #[test]
    fn parallel_row_groups_write_what_polars_writes() {
        let dir = tempfile::tempdir().unwrap();
        // Three row groups and a bit, so that they are written in more than one window.
        let mut df = schema::to_frame(&testing::rows(3 * ROW_GROUP_ROWS + 17)).unwrap();
        let path = dir.path().join("polars.parquet");
        ParquetWriter::new(File::create(&path).unwrap())
            .with_compression(CODEC)
            .with_statistics(StatisticsOptions::default())
            .with_row_group_size(Some(ROW_GROUP_ROWS))
            .finish(&mut df)
            .unwrap();
        let expected = std::fs::read(&path).unwrap();
        for threads in [1, 2, 5] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let path = dir.path().join(format!("ours-{threads}.parquet"));
            pool.install(|| write_frame(&path, &mut df.clone(), &[]))
                .unwrap();
            assert!(
                std::fs::read(&path).unwrap() == expected,
                "{threads} threads"
            );
        }
    }

    /// The free-text columns are written without a dictionary, the others as polars chooses; the
    /// bytes do not depend on the thread count, and polars reads the same frame back.
    #[test]
    fn free_text_columns_are_plain_encoded() {
        let dir = tempfile::tempdir().unwrap();
        let df = schema::to_frame(&testing::rows(2 * ROW_GROUP_ROWS + 5)).unwrap();
        let mut written = Vec::new();
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let path = dir.path().join(format!("{threads}.parquet"));
            pool.install(|| write_frame(&path, &mut df.clone(), &schema::FREE_TEXT))
                .unwrap();
            written.push(std::fs::read(&path).unwrap());
        }
        assert!(written[0] == written[1]);
        let path = dir.path().join("1.parquet");
        assert!(read_frame(&path, "1.parquet").unwrap().equals_missing(&df));
        let mut file = File::open(&path).unwrap();
        let metadata = polars_parquet::read::read_metadata(&mut file).unwrap();
        for column in metadata.row_groups[0].parquet_columns() {
            let name = column.descriptor().path_in_schema[0].as_str();
            let dictionary = column.dictionary_page_offset().is_some();
            if schema::FREE_TEXT.contains(&name) {
                assert!(!dictionary, "{name}");
            } else if name == schema::SOURCE {
                assert!(dictionary, "{name}");
            }
        }
    }
}
