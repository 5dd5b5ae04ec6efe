//! Reads the row images of a ROWS event.
//!
//! Every ROWS event but MySQL's partial JSON updates goes through this
//! reader: `mysql_common`'s row iterator builds a named `Column` per value
//! and parses the table map's optional metadata again for every row, which
//! cost the master about a fifth of its decode time. Values are still read
//! by `mysql_common`'s own value reader.
//!
//! `mysql_common` 0.37 decodes a negative TIME(1) or TIME(2) with a
//! fraction wrongly: it borrows from the integer part into an unsigned
//! fraction, which wraps, so '-23:45:56.7' comes out as 00:00:00.0 and
//! '-838:59:59.99' as -213:59:59.99 (TIME(3)..TIME(6) are right). The
//! crate cannot be patched here, so this module walks the row images itself (null bitmap, then one value per
//! present column, as the server writes them), hands every other column to
//! `mysql_common`'s own value reader and decodes those TIME columns the way
//! the server's `my_time_packed_from_binary` does.

use std::io;

use mysql_common::binlog::events::{OptionalMetaExtractor, RowsEventData, TableMapEvent};
use mysql_common::binlog::value::BinlogValue;
use mysql_common::constants::ColumnType;
use mysql_common::io::ParseBuf;
use mysql_common::value::Value as MyValue;

/// One row of a rows event: its before and after images, each a value per
/// column of the image (`None` for a column absent from it).
pub type ImagePair = (
    Option<Vec<BinlogValue<'static>>>,
    Option<Vec<BinlogValue<'static>>>,
);

/// Whether a table has a column `mysql_common` misreads (TIME(1) or TIME(2)).
pub fn needs_own_reader(tme: &TableMapEvent<'_>) -> bool {
    (0..tme.columns_count() as usize).any(|i| short_fraction_time(tme, i))
}

fn short_fraction_time(tme: &TableMapEvent<'_>, i: usize) -> bool {
    matches!(
        tme.get_column_type(i),
        Ok(Some(ColumnType::MYSQL_TYPE_TIME2))
    ) && matches!(tme.get_column_metadata(i), Some([1 | 2, ..]))
}

/// How to read one column's values: what `mysql_common`'s row reader
/// derives per column of every row, derived once per table map here.
struct ColumnPlan {
    column_type: ColumnType,
    meta: Box<[u8]>,
    unsigned: bool,
    /// TIME(1) or TIME(2): read by [`time_with_hundredths`].
    short_time: bool,
}

/// How to read the row images of one table map's ROWS events. The decoder
/// keeps it with the map while the map stays the same, so the optional
/// metadata is not walked again for every event.
pub struct RowPlan {
    columns: Vec<ColumnPlan>,
}

impl RowPlan {
    /// Fails where `mysql_common`'s row reader fails on the table map (a
    /// column without a type, unreadable optional metadata).
    pub fn new(tme: &TableMapEvent<'_>) -> io::Result<RowPlan> {
        Ok(RowPlan {
            columns: column_plan(tme, tme.columns_count() as usize)?,
        })
    }
}

/// Every row of `rows`, read column by column, with each value read by
/// `mysql_common`'s own value reader (TIME(1)/TIME(2) by this module).
/// This is `mysql_common`'s row iterator without its per-row work that
/// rowcast never uses (a named `Column` per value, the table map's
/// optional metadata parsed again for every row): the metadata is read
/// and checked once per table map ([`RowPlan`]), with the same errors.
pub fn read_rows(rows: &RowsEventData<'_>, plan: &RowPlan) -> io::Result<Vec<ImagePair>> {
    if matches!(rows, RowsEventData::PartialUpdateRowsEvent(_)) {
        // MySQL's partial JSON images carry a shared-image header this
        // reader does not parse; refusing is better than misreading.
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a PARTIAL_UPDATE_ROWS event on a table with a TIME(1) or TIME(2) column; \
             set binlog_row_value_options='' on the primary",
        ));
    }
    let mut buf = ParseBuf(rows.rows_data());
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    let num_columns = rows.num_columns() as usize;
    // More columns than the map describes: as mysql_common's reader says.
    let Some(plan) = plan.columns.get(..num_columns) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "No column type"));
    };
    let before: Option<Vec<usize>> = rows.columns_before_image().map(|b| {
        (0..num_columns)
            .filter(|&i| b.get(i).is_some_and(|x| *x))
            .collect()
    });
    let after: Option<Vec<usize>> = rows.columns_after_image().map(|b| {
        (0..num_columns)
            .filter(|&i| b.get(i).is_some_and(|x| *x))
            .collect()
    });
    let mut out = Vec::new();
    while !buf.is_empty() {
        let b = match &before {
            Some(cols) => Some(read_image(&mut buf, cols, plan)?),
            None => None,
        };
        let a = match &after {
            Some(cols) => Some(read_image(&mut buf, cols, plan)?),
            None => None,
        };
        out.push((b, a));
    }
    Ok(out)
}

/// Each column's type, metadata and signedness; fails where
/// `mysql_common`'s row reader fails on the table map (a column without a
/// type, unreadable optional metadata).
fn column_plan(tme: &TableMapEvent<'_>, num_columns: usize) -> io::Result<Vec<ColumnPlan>> {
    let meta = OptionalMetaExtractor::new(tme.iter_optional_meta())?;
    let mut signedness = meta.iter_signedness();
    let mut charsets = meta.iter_charset();
    let mut enum_charsets = meta.iter_enum_and_set_charset();
    let mut primary_key = meta.iter_primary_key().peekable();
    let mut names = meta.iter_column_name();
    let mut plan = Vec::with_capacity(num_columns);
    for i in 0..num_columns {
        let column_type = match tme.get_column_type(i) {
            Ok(Some(t)) => t,
            Ok(None) => return Err(io::Error::new(io::ErrorKind::InvalidData, "No column type")),
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        };
        let unsigned = column_type
            .is_numeric_type()
            .then(|| signedness.next())
            .flatten()
            .unwrap_or_default();
        // Read only for their errors, as mysql_common reads them.
        if column_type.is_character_type() {
            charsets.next().transpose()?;
        } else if column_type.is_enum_or_set_type() {
            enum_charsets.next().transpose()?;
        }
        names.next().transpose()?;
        primary_key
            .next_if(|next| next.is_err() || next.as_ref().ok() == Some(&(i as u64)))
            .transpose()?;
        plan.push(ColumnPlan {
            column_type,
            meta: tme.get_column_metadata(i).unwrap_or(&[]).into(),
            unsigned,
            short_time: short_fraction_time(tme, i),
        });
    }
    Ok(plan)
}

fn read_image(
    buf: &mut ParseBuf<'_>,
    cols: &[usize],
    plan: &[ColumnPlan],
) -> io::Result<Vec<BinlogValue<'static>>> {
    let nulls = take(buf, cols.len().div_ceil(8))?;
    let mut values = Vec::with_capacity(cols.len());
    for (image_idx, &i) in cols.iter().enumerate() {
        let is_null = nulls[image_idx / 8] & (1 << (image_idx % 8)) != 0;
        if is_null {
            values.push(BinlogValue::Value(MyValue::NULL));
            continue;
        }
        let column = &plan[i];
        if column.short_time {
            let bytes = take(buf, 4)?;
            values.push(BinlogValue::Value(time_with_hundredths(bytes)));
            continue;
        }
        let ctx = (column.column_type, &column.meta[..], column.unsigned, false);
        // The value reader ties the column's metadata to the buffer's
        // lifetime, so it reads from a short-lived view that is then
        // consumed from `buf`.
        let mut view = ParseBuf(buf.0);
        let value = view.parse::<BinlogValue<'_>>(ctx)?.into_owned();
        let used = buf.0.len() - view.0.len();
        take(buf, used)?;
        values.push(value);
    }
    Ok(values)
}

fn take<'a>(buf: &mut ParseBuf<'a>, n: usize) -> io::Result<&'a [u8]> {
    buf.checked_eat(n).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "rows event ends inside a row image",
        )
    })
}

/// A TIME(1) or TIME(2) value: a 3-byte big-endian integer part offset by
/// 0x800000 and one signed byte of hundredths. A negative time with a
/// fraction is stored with the integer part one lower and the fraction
/// counted up from it, so it is borrowed back before splitting the fields.
pub fn time_with_hundredths(bytes: &[u8]) -> MyValue {
    let raw = (i64::from(bytes[0]) << 16) | (i64::from(bytes[1]) << 8) | i64::from(bytes[2]);
    let mut int_part = raw - 0x80_0000;
    let mut hundredths = i64::from(bytes[3]);
    if int_part < 0 && hundredths > 0 {
        int_part += 1;
        hundredths -= 0x100;
    }
    let packed = (int_part << 24) + hundredths * 10_000;
    let negative = packed < 0;
    let magnitude = packed.unsigned_abs();
    let hms = magnitude >> 24;
    let micros = (magnitude % (1 << 24)) as u32;
    let hours = ((hms >> 12) % (1 << 10)) as u32;
    MyValue::Time(
        negative,
        hours / 24,
        (hours % 24) as u8,
        ((hms >> 6) % (1 << 6)) as u8,
        (hms % (1 << 6)) as u8,
        micros,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes like the server's `my_time_packed_to_binary` for 1..2
    /// fractional digits.
    fn encode(negative: bool, h: i64, m: i64, s: i64, hundredths: i64) -> [u8; 4] {
        let hms = (h << 12) | (m << 6) | s;
        let mut packed = (hms << 24) + hundredths * 10_000;
        if negative {
            packed = -packed;
        }
        // The server shifts (a floor) for the integer part and takes a
        // truncating remainder for the fraction, stored as a signed byte.
        let int_part = packed >> 24;
        let frac = (packed % (1 << 24) / 10_000) as i8 as u8;
        let int_stored = (int_part + 0x80_0000) as u32;
        let b = int_stored.to_be_bytes();
        [b[1], b[2], b[3], frac]
    }

    #[test]
    fn negative_times_with_hundredths_keep_every_field() {
        for (neg, h, m, s, f) in [
            (true, 23, 45, 56, 70),
            (true, 838, 59, 59, 99),
            (true, 0, 0, 0, 1),
            (true, 0, 0, 1, 0),
            (false, 838, 59, 59, 99),
            (false, 0, 0, 0, 0),
            (true, 12, 0, 0, 50),
        ] {
            let v = time_with_hundredths(&encode(neg, h, m, s, f));
            assert_eq!(
                v,
                MyValue::Time(
                    neg,
                    (h / 24) as u32,
                    (h % 24) as u8,
                    m as u8,
                    s as u8,
                    (f * 10_000) as u32
                ),
                "{neg} {h}:{m}:{s}.{f}"
            );
        }
    }
}
