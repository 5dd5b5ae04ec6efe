//! SQL text and parameter values for the applier: identifier quoting and
//! the mapping from rowcast [`Value`]s to `mysql_async` parameters.
//!
//! Values travel as binary-protocol parameters, never spliced into SQL
//! text, so no value can change the meaning of a statement and no
//! float or date goes through a lossy text round trip.

use mysql_async::Value as MyValue;

use crate::change::Value;

/// Quotes an identifier with backticks, doubling any backtick inside.
pub fn ident(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    s.push('`');
    for c in name.chars() {
        if c == '`' {
            s.push('`');
        }
        s.push(c);
    }
    s.push('`');
    s
}

pub fn table(database: &str, table: &str) -> String {
    format!("{}.{}", ident(database), ident(table))
}

/// Converts an exact binlog value into the parameter that writes it back.
/// The apply session runs with `time_zone='+00:00'`, so a TIMESTAMP's UTC
/// civil time stores the same instant; ENUM, SET, BIT and YEAR are written
/// by number, which the server takes as index, bit set, bits and year.
pub fn param(v: &Value) -> MyValue {
    match v {
        Value::Null => MyValue::NULL,
        Value::Int(i) => MyValue::Int(*i),
        Value::UInt(u) => MyValue::UInt(*u),
        Value::Float(f) => MyValue::Float(*f),
        Value::Double(d) => MyValue::Double(*d),
        Value::Decimal(s) => MyValue::Bytes(s.as_bytes().to_vec()),
        Value::Bytes(b) | Value::Json(b) => MyValue::Bytes(b.clone()),
        Value::Date { year, month, day } => MyValue::Date(*year, *month, *day, 0, 0, 0, 0),
        Value::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        } => MyValue::Date(*year, *month, *day, *hour, *minute, *second, *micros),
        Value::Timestamp { seconds, micros } => {
            if *seconds == 0 && *micros == 0 {
                MyValue::Date(0, 0, 0, 0, 0, 0, 0)
            } else {
                let (y, m, d, hh, mm, ss) = civil_from_epoch(i64::from(*seconds));
                MyValue::Date(y, m, d, hh, mm, ss, *micros)
            }
        }
        Value::Time {
            negative,
            hours,
            minutes,
            seconds,
            micros,
        } => MyValue::Time(
            *negative,
            hours / 24,
            (hours % 24) as u8,
            *minutes,
            *seconds,
            *micros,
        ),
        Value::Year(y) => MyValue::UInt(u64::from(*y)),
        Value::Enum(i) => MyValue::UInt(u64::from(*i)),
        Value::Set(b) | Value::Bit(b) => MyValue::UInt(*b),
    }
}

/// UTC civil time of a Unix timestamp (Howard Hinnant's algorithm).
pub fn civil_from_epoch(secs: i64) -> (u16, u8, u8, u8, u8, u8) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        y as u16,
        m as u8,
        d as u8,
        (rem / 3600) as u8,
        (rem % 3600 / 60) as u8,
        (rem % 60) as u8,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(ident("a"), "`a`");
        assert_eq!(ident("we`ird name"), "`we``ird name`");
        assert_eq!(table("d", "t"), "`d`.`t`");
    }

    #[test]
    fn epoch_to_civil() {
        assert_eq!(civil_from_epoch(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil_from_epoch(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil_from_epoch(2_147_483_647), (2038, 1, 19, 3, 14, 7));
        assert_eq!(civil_from_epoch(1_700_000_000), (2023, 11, 14, 22, 13, 20));
    }

    #[test]
    fn zero_timestamp_is_zero_datetime() {
        assert_eq!(
            param(&Value::Timestamp {
                seconds: 0,
                micros: 0
            }),
            MyValue::Date(0, 0, 0, 0, 0, 0, 0)
        );
        assert_eq!(
            param(&Value::Time {
                negative: true,
                hours: 50,
                minutes: 1,
                seconds: 2,
                micros: 3
            }),
            MyValue::Time(true, 2, 2, 1, 2, 3)
        );
    }
}
