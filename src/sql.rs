//! SQL text and parameter values for the applier: identifier quoting and
//! the mapping from rowcast [`Value`]s to `mysql_async` parameters.
//!
//! Values travel as binary-protocol parameters, never spliced into SQL
//! text, so no value can change the meaning of a statement and no
//! float or date goes through a lossy text round trip.

use mysql_async::Value as MyValue;

use crate::log::change::{JsonEdit, JsonEditOp, Value};

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

/// A string literal for the few places a value must be in the text (SET
/// SESSION, information_schema filters), read the same whatever the
/// session's sql_mode: quotes are doubled, and a value with a backslash,
/// which NO_BACKSLASH_ESCAPES would read differently, is written in hex.
pub fn literal(s: &str) -> String {
    if s.contains('\\') {
        let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
        return format!("X'{hex}'");
    }
    format!("'{}'", s.replace('\'', "''"))
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
        // A partial JSON update is an expression, not a value: the
        // statement plan writes it with `json_edit_sql`, never through here.
        Value::JsonDiff(_) => unreachable!("partial JSON updates are planned as SQL expressions"),
    }
}

/// The SQL expression that applies MySQL partial JSON edits to `column`,
/// with its parameters in textual order. Values go through
/// `JSON_EXTRACT(?, '$')` so both MySQL and MariaDB treat them as JSON,
/// not as strings. `text` is each string parameter's placeholder: `?`, or
/// for a MySQL JSON column `CONVERT(? USING utf8mb4)` (MySQL's JSON
/// functions refuse a `binary` string, the apply session's charset).
pub fn json_edit_sql(
    column: &str,
    edits: &[JsonEdit],
    text: &str,
    params: &mut Vec<MyValue>,
) -> String {
    let mut expr = ident(column);
    for e in edits {
        let path = MyValue::Bytes(e.path.as_bytes().to_vec());
        let value = || MyValue::Bytes(e.value.clone().unwrap_or_else(|| b"null".to_vec()));
        expr = match e.op {
            JsonEditOp::Replace => {
                params.extend([path, value()]);
                format!("JSON_REPLACE({expr}, {text}, JSON_EXTRACT({text}, '$'))")
            }
            // An array position inserts (shifting the rest); a member adds.
            JsonEditOp::Insert if e.path.ends_with(']') => {
                params.extend([path, value()]);
                format!("JSON_ARRAY_INSERT({expr}, {text}, JSON_EXTRACT({text}, '$'))")
            }
            JsonEditOp::Insert => {
                params.extend([path, value()]);
                format!("JSON_INSERT({expr}, {text}, JSON_EXTRACT({text}, '$'))")
            }
            JsonEditOp::Remove => {
                params.push(path);
                format!("JSON_REMOVE({expr}, {text})")
            }
        };
    }
    expr
}

/// `YYYY-MM-DD hh:mm:ss` of a Unix timestamp, in UTC.
pub fn civil_string(secs: i64) -> String {
    let (y, m, d, hh, mm, ss) = civil_from_epoch(secs);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}")
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
    fn literals_read_the_same_in_every_sql_mode() {
        assert_eq!(literal("Europe/Paris"), "'Europe/Paris'");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("a\\b"), "X'615c62'");
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(ident("a"), "`a`");
        assert_eq!(ident("we`ird name"), "`we``ird name`");
        assert_eq!(table("d", "t"), "`d`.`t`");
    }

    #[test]
    fn json_edits_nest_in_order() {
        let edits = vec![
            JsonEdit {
                op: JsonEditOp::Replace,
                path: "$.a".into(),
                value: Some(b"1".to_vec()),
            },
            JsonEdit {
                op: JsonEditOp::Insert,
                path: "$.b[0]".into(),
                value: Some(b"\"x\"".to_vec()),
            },
            JsonEdit {
                op: JsonEditOp::Remove,
                path: "$.c".into(),
                value: None,
            },
        ];
        let mut params = Vec::new();
        let sql = json_edit_sql("j", &edits, "?", &mut params);
        assert_eq!(
            sql,
            "JSON_REMOVE(JSON_ARRAY_INSERT(JSON_REPLACE(`j`, ?, JSON_EXTRACT(?, '$')), ?, JSON_EXTRACT(?, '$')), ?)"
        );
        assert_eq!(params.len(), 5);
        assert_eq!(params[0], MyValue::Bytes(b"$.a".to_vec()));
        assert_eq!(params[4], MyValue::Bytes(b"$.c".to_vec()));
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
