//! Local data files for `tablectl write` (input) and `tablectl read -o` (output): Parquet and
//! CSV, chosen by extension.

use anyhow::{Context, Result, bail};
use arrow_array::{RecordBatch, RecordBatchReader};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::fs::File;
use std::io::{BufReader, Seek};
use std::path::Path;

/// Rows per batch read from an input file.
const INPUT_BATCH_ROWS: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Parquet,
    Csv,
}

fn format_of(path: &Path) -> Result<Format> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("parquet" | "pq") => Ok(Format::Parquet),
        Some("csv") => Ok(Format::Csv),
        _ => bail!(
            "{} is neither .parquet nor .csv; give a file with one of those extensions",
            path.display()
        ),
    }
}

/// An input file as a stream of record batches, with its row count when the format says.
///
/// # Errors
/// When the file cannot be opened or is not valid Parquet/CSV.
pub fn open_input(path: &Path) -> Result<(Box<dyn RecordBatchReader + Send>, Option<u64>)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    match format_of(path)? {
        Format::Parquet => {
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                .with_context(|| format!("{} is not a valid Parquet file", path.display()))?;
            let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
            let reader = builder.with_batch_size(INPUT_BATCH_ROWS).build()?;
            let checked = RowCountChecked {
                inner: reader,
                expected: rows,
                seen: 0,
                file: path.display().to_string(),
            };
            Ok((Box::new(checked), Some(rows)))
        }
        Format::Csv => {
            let mut file = BufReader::new(file);
            let format = arrow_csv::reader::Format::default().with_header(true);
            let (schema, _) = format
                .infer_schema(&mut file, Some(10_000))
                .with_context(|| {
                    format!("cannot read the header and types of {}", path.display())
                })?;
            file.rewind()?;
            let reader = arrow_csv::ReaderBuilder::new(std::sync::Arc::new(schema))
                .with_format(format)
                .with_batch_size(INPUT_BATCH_ROWS)
                .build(file)?;
            Ok((Box::new(reader), None))
        }
    }
}

/// A Parquet input that must decode to exactly the rows its footer declares: a file whose
/// structure the decoder misreads (a legacy repeated field, say) is refused, never stored short.
struct RowCountChecked<R> {
    inner: R,
    expected: u64,
    seen: u64,
    file: String,
}

impl<R: RecordBatchReader> Iterator for RowCountChecked<R> {
    type Item = Result<RecordBatch, arrow_schema::ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.inner.next() {
            Some(Ok(batch)) => {
                self.seen += batch.num_rows() as u64;
                Some(Ok(batch))
            }
            Some(Err(e)) => Some(Err(e)),
            None if self.seen != self.expected => {
                let error = arrow_schema::ArrowError::ParquetError(format!(
                    "{} declares {} rows in its footer, but {} rows were decoded from it; its \
                     structure is not one this reader understands, so nothing was written",
                    self.file, self.expected, self.seen
                ));
                self.seen = self.expected;
                Some(Err(error))
            }
            None => None,
        }
    }
}

impl<R: RecordBatchReader> RecordBatchReader for RowCountChecked<R> {
    fn schema(&self) -> arrow_schema::SchemaRef {
        self.inner.schema()
    }
}

/// Writes batches to a .parquet (zstd) or .csv file.
///
/// # Errors
/// When the file cannot be written.
pub fn write_output(
    path: &Path,
    schema: arrow_schema::SchemaRef,
    batches: &[RecordBatch],
) -> Result<()> {
    let format = format_of(path)?;
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    match format {
        Format::Parquet => {
            let properties = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
                .build();
            let mut writer = ArrowWriter::try_new(file, schema, Some(properties))?;
            for batch in batches {
                writer.write(batch)?;
            }
            writer.close()?;
        }
        Format::Csv => {
            let mut writer = arrow_csv::WriterBuilder::new()
                .with_header(true)
                .build(file);
            for batch in batches {
                writer.write(batch)?;
            }
        }
    }
    Ok(())
}
