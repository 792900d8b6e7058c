//! Reading and writing example files as Parquet, byte for byte reproducibly: one chunk, fixed
//! row groups, fixed compression (zstd, level 1), and nothing in the metadata that varies between
//! runs.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use polars::prelude::*;
use sluice_stage::StageError;

use crate::schema::{self, Example};

/// Rows per Parquet row group. Fixed, so that the file does not depend on how polars chunked the
/// frame.
const ROW_GROUP_ROWS: usize = 65_536;

/// Reads an example file written by a data stage (or by the user, in the example schema).
pub fn read_examples(path: &Path, shown: &str) -> Result<Vec<Example>, StageError> {
    let df = read_frame(path, shown)?;
    schema::from_frame(&df).map_err(|e| StageError::failed(format!("{shown}: {e}")))
}

/// Reads any Parquet file into a frame.
pub fn read_frame(path: &Path, shown: &str) -> Result<DataFrame, StageError> {
    let file =
        File::open(path).map_err(|e| StageError::failed(format!("cannot open {shown}: {e}")))?;
    ParquetReader::new(file)
        .finish()
        .map_err(|e| StageError::failed(format!("cannot read {shown} as parquet: {e}")))
}

/// Writes rows in the example schema.
pub fn write_examples(path: &Path, rows: &[Example]) -> Result<(), StageError> {
    let failed = |e: &dyn std::fmt::Display| {
        StageError::failed(format!("cannot write {}: {e}", path.display()))
    };
    let mut df = schema::to_frame(rows).map_err(|e| failed(&e))?;
    let file = File::create(path).map_err(|e| failed(&e))?;
    let mut out = BufWriter::new(file);
    ParquetWriter::new(&mut out)
        // zstd at level 1: the codec and level never vary. Level 1 compresses nearly as well as
        // the default (3) at a fraction of the time; any Parquet reader reads either.
        .with_compression(ParquetCompression::Zstd(Some(
            polars::polars_utils::compression::ZstdLevel::try_new(1).map_err(|e| failed(&e))?,
        )))
        .with_row_group_size(Some(ROW_GROUP_ROWS))
        .with_statistics(StatisticsOptions::default())
        .finish(&mut df)
        .map_err(|e| failed(&e))?;
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
    let file = File::create(path).map_err(|e| failed(&e))?;
    let mut out = BufWriter::new(file);
    ParquetWriter::new(&mut out)
        .with_compression(ParquetCompression::Zstd(Some(
            polars::polars_utils::compression::ZstdLevel::try_new(1).map_err(|e| failed(&e))?,
        )))
        .with_row_group_size(Some(ROW_GROUP_ROWS))
        .with_statistics(StatisticsOptions::default())
        .finish(&mut df)
        .map_err(|e| failed(&e))?;
    out.flush().map_err(|e| failed(&e))?;
    Ok(())
}
