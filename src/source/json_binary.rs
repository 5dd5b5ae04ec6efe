//! MySQL binary JSON (the JSONB in row events) to the JSON text MySQL
//! itself returns for `SELECT col`.
//!
//! The replica is MariaDB, whose JSON columns are plain text: what reaches
//! it is this text, so it must be MySQL's own rendering, byte for byte, of
//! every value a JSON document can hold. That includes the *opaque*
//! scalars MySQL keeps in JSON (`JSON_OBJECT('price', 9.99)` stores 9.99 as
//! an opaque DECIMAL, `CAST(NOW() AS JSON)` a DATETIME), which
//! `serde_json` cannot represent. The rules follow `wrapper_to_string` in
//! MySQL's `sql-common/json_dom.cc`:
//!
//! * objects keep the stored key order and print `{"a": 1, "b": [1, 2]}`
//!   (a space after `:` and after `,`);
//! * strings escape `"` `\` `\b` `\f` `\n` `\r` `\t` and other bytes up to
//!   0x1f as `\u00xx`; every other byte passes through unchanged;
//! * doubles print as `my_gcvt` does (shortest round-trip digits, `e`
//!   notation past 15 integer digits or below 1e-15), with `.0` added when
//!   neither a `.` nor an `e` came out;
//! * DECIMAL prints as an unquoted number with its own scale (`9.00`);
//!   DATE, DATETIME, TIMESTAMP and TIME as quoted strings with six fraction
//!   digits (`"2012-03-18 11:30:45.000000"`, `"-87:31:46.654321"`);
//!   VAR_STRING as a plain string; any other opaque type as
//!   `"base64:typeN:<base64>"`, MySQL's base64 with a newline every 76
//!   characters.
//!
//! This module only renders; it does not parse JSON text or apply
//! partial-update diffs (the replica does that with `JSON_REPLACE` & co.).

use mysql_common::binlog::decimal::Decimal;
use mysql_common::binlog::jsonb::{Array, ComplexValue, Object, OpaqueValue, StorageFormat, Value};
use mysql_common::constants::ColumnType;

/// MySQL refuses documents nested deeper (`JSON_DOCUMENT_MAX_DEPTH`), so a
/// deeper one in a binlog is corrupt; the bound also keeps a corrupt event
/// from recursing without end.
const MAX_DEPTH: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum JsonTextError {
    #[error("binary JSON value is malformed: {0}; the row event is corrupt, re-read the binlog from the primary")]
    Malformed(#[from] std::io::Error),
    #[error("binary JSON value nests deeper than MySQL's limit of {MAX_DEPTH}; the row event is corrupt, re-read the binlog from the primary")]
    TooDeep,
    #[error("binary JSON holds an opaque {kind} of {len} bytes, which MySQL never writes (expected {expected}); the row event is corrupt, re-read the binlog from the primary")]
    Opaque {
        kind: &'static str,
        len: usize,
        expected: &'static str,
    },
}

/// The JSON text MySQL prints for `value`.
pub fn to_mysql_text(value: &Value<'_>) -> Result<Vec<u8>, JsonTextError> {
    let mut out = Vec::new();
    write_value(value, &mut out, 0)?;
    Ok(out)
}

fn write_value(value: &Value<'_>, out: &mut Vec<u8>, depth: usize) -> Result<(), JsonTextError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::I16(x) => out.extend_from_slice(x.to_string().as_bytes()),
        Value::U16(x) => out.extend_from_slice(x.to_string().as_bytes()),
        Value::I32(x) => out.extend_from_slice(x.to_string().as_bytes()),
        Value::U32(x) => out.extend_from_slice(x.to_string().as_bytes()),
        Value::I64(x) => out.extend_from_slice(x.to_string().as_bytes()),
        Value::U64(x) => out.extend_from_slice(x.to_string().as_bytes()),
        Value::F64(x) => out.extend_from_slice(json_double(*x).as_bytes()),
        Value::String(s) => quote(s.str_raw(), out),
        Value::SmallArray(a) => write_array(a, out, depth + 1)?,
        Value::LargeArray(a) => write_array(a, out, depth + 1)?,
        Value::SmallObject(o) => write_object(o, out, depth + 1)?,
        Value::LargeObject(o) => write_object(o, out, depth + 1)?,
        Value::Opaque(o) => write_opaque(o, out)?,
    }
    Ok(())
}

fn write_array<T: StorageFormat>(
    array: &ComplexValue<'_, T, Array>,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), JsonTextError> {
    if depth > MAX_DEPTH {
        return Err(JsonTextError::TooDeep);
    }
    out.push(b'[');
    for (i, element) in array.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        write_value(&element?, out, depth)?;
    }
    out.push(b']');
    Ok(())
}

fn write_object<T: StorageFormat>(
    object: &ComplexValue<'_, T, Object>,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), JsonTextError> {
    if depth > MAX_DEPTH {
        return Err(JsonTextError::TooDeep);
    }
    out.push(b'{');
    // The stored order is MySQL's (keys sorted by length, then bytes), and
    // MySQL prints them in it; re-sorting would change the text.
    for (i, entry) in object.iter().enumerate() {
        let (key, value) = entry?;
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        quote(key.value_raw(), out);
        out.extend_from_slice(b": ");
        write_value(&value, out, depth)?;
    }
    out.push(b'}');
    Ok(())
}

fn write_opaque(o: &OpaqueValue<'_>, out: &mut Vec<u8>) -> Result<(), JsonTextError> {
    let data = o.data_raw();
    match o.value_type() {
        ColumnType::MYSQL_TYPE_NEWDECIMAL => out.extend_from_slice(decimal_text(data)?.as_bytes()),
        ColumnType::MYSQL_TYPE_DATE => {
            let t = Packed::datetime(packed(data, "DATE")?);
            quote(t.date().as_bytes(), out);
        }
        ColumnType::MYSQL_TYPE_DATETIME | ColumnType::MYSQL_TYPE_TIMESTAMP => {
            let t = Packed::datetime(packed(data, "DATETIME")?);
            quote(format!("{} {}", t.date(), t.clock()).as_bytes(), out);
        }
        ColumnType::MYSQL_TYPE_TIME => {
            let t = Packed::time(packed(data, "TIME")?);
            let sign = if t.negative { "-" } else { "" };
            quote(format!("{sign}{}", t.clock()).as_bytes(), out);
        }
        // MySQL treats strings kept as opaque as plain JSON strings.
        ColumnType::MYSQL_TYPE_VAR_STRING => quote(data, out),
        other => {
            let mut text = format!("base64:type{}:", other as u8).into_bytes();
            mysql_base64(data, &mut text);
            quote(&text, out);
        }
    }
    Ok(())
}

/// An opaque DECIMAL is `[precision, scale, decimal binary]`; MySQL prints
/// it with `decimal2string`, every digit of its scale kept.
fn decimal_text(data: &[u8]) -> Result<String, JsonTextError> {
    let bad = || JsonTextError::Opaque {
        kind: "DECIMAL",
        len: data.len(),
        expected: "precision, scale and the decimal's binary form",
    };
    let (&[precision, scale], _) = data.split_first_chunk::<2>().ok_or_else(bad)?;
    if precision == 0 || precision > 65 || scale > 30 || scale > precision {
        return Err(bad());
    }
    Ok(Decimal::read_packed(data, false)
        .map_err(|_| bad())?
        .to_string())
}

/// Date and time opaques hold MySQL's 8-byte packed longlong.
fn packed(data: &[u8], kind: &'static str) -> Result<i64, JsonTextError> {
    match data.first_chunk::<8>() {
        Some(b) if data.len() == 8 => Ok(i64::from_le_bytes(*b)),
        _ => Err(JsonTextError::Opaque {
            kind,
            len: data.len(),
            expected: "8 bytes",
        }),
    }
}

/// The fields of MySQL's packed temporal longlong (`TIME_from_longlong_*`
/// in `mysys/my_time.cc`): the integer part above bit 24, microseconds
/// below it.
struct Packed {
    negative: bool,
    year: u64,
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
    micros: u64,
}

impl Packed {
    fn split(v: i64) -> (bool, u64, u64) {
        let magnitude = v.unsigned_abs();
        (v < 0, magnitude >> 24, magnitude % (1 << 24))
    }

    fn datetime(v: i64) -> Packed {
        let (negative, ymdhms, micros) = Packed::split(v);
        let ymd = ymdhms >> 17;
        let ym = ymd >> 5;
        let hms = ymdhms % (1 << 17);
        Packed {
            negative,
            year: ym / 13,
            month: ym % 13,
            day: ymd % (1 << 5),
            hour: hms >> 12,
            minute: (hms >> 6) % (1 << 6),
            second: hms % (1 << 6),
            micros,
        }
    }

    fn time(v: i64) -> Packed {
        let (negative, hms, micros) = Packed::split(v);
        Packed {
            negative,
            year: 0,
            month: 0,
            day: 0,
            hour: (hms >> 12) % (1 << 10),
            minute: (hms >> 6) % (1 << 6),
            second: hms % (1 << 6),
            micros,
        }
    }

    fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `my_TIME_to_str(..., 6)`: always six fraction digits.
    fn clock(&self) -> String {
        format!(
            "{:02}:{:02}:{:02}.{:06}",
            self.hour, self.minute, self.second, self.micros
        )
    }
}

/// `double_quote` in json_dom.cc: works on bytes, so text that is not
/// UTF-8 reaches the replica as MySQL would print it.
fn quote(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// MySQL's `base64_encode` (mysys/base64.cc): the standard alphabet with
/// padding, and a newline after every 76 characters.
fn mysql_base64(data: &[u8], out: &mut Vec<u8>) {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (i, chunk) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push(b'\n');
        }
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        out.push(TABLE[(n >> 18) as usize & 63]);
        out.push(TABLE[(n >> 12) as usize & 63]);
        out.push(if chunk.len() > 1 {
            TABLE[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if chunk.len() > 2 {
            TABLE[n as usize & 63]
        } else {
            b'='
        });
    }
}

/// A JSON double as MySQL prints it: `my_gcvt(d, MY_GCVT_ARG_DOUBLE, 34)`
/// (strings/dtoa.cc), then `.0` when the result looks like an integer.
///
/// `my_gcvt` asks `dtoa` (mode 4) for at most 33 significant digits, which
/// for a double is the shortest string that reads back as the same value:
/// the same digits Rust's `{:e}` gives. With that field width the 'f'/'e'
/// choice reduces to: 'f' when the decimal point falls within 14 places
/// left of the first digit and 15 right of it (or the digits run past
/// it), else 'e' with an exponent such as `e20` or `e-16`.
fn json_double(d: f64) -> String {
    if !d.is_finite() {
        // dtoa's overflow case; MySQL never stores these in JSON.
        return "0.0".into();
    }
    let sci = format!("{:e}", d.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    let len = digits.len() as i32;
    let decpt = exp + 1;
    let mut out = String::new();
    if d.is_sign_negative() {
        out.push('-');
    }
    if decpt >= -14 && (decpt <= 15 || len > decpt) {
        if decpt <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', decpt.unsigned_abs() as usize));
            out.push_str(&digits);
        } else if decpt < len {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        } else {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', (decpt - len) as usize));
        }
    } else {
        out.push_str(&digits[..1]);
        if len > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push_str(&(decpt - 1).to_string());
    }
    if !out.contains(['.', 'e']) {
        out.push_str(".0");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::io::ParseBuf;

    fn text(jsonb: &[u8]) -> String {
        let v: Value<'_> = ParseBuf(jsonb).parse(()).unwrap();
        String::from_utf8(to_mysql_text(&v).unwrap()).unwrap()
    }

    /// A jsonb scalar document: type byte, then the value.
    fn opaque(field_type: u8, data: &[u8]) -> String {
        let mut doc = vec![0x0f, field_type, data.len() as u8];
        doc.extend_from_slice(data);
        text(&doc)
    }

    fn packed_datetime(y: u64, mo: u64, d: u64, h: u64, mi: u64, s: u64, us: u64) -> [u8; 8] {
        let ymd = ((y * 13 + mo) << 5) | d;
        let hms = (h << 12) | (mi << 6) | s;
        ((((ymd << 17) | hms) << 24) + us).to_le_bytes()
    }

    #[test]
    fn doubles_print_as_my_gcvt_does() {
        for (d, want) in [
            (1.0, "1.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.3333333333333333"),
            (123456.789, "123456.789"),
            (1e14, "100000000000000.0"),
            (1e15, "1e15"),
            (1.5e15, "1.5e15"),
            (1234567890123456.7, "1234567890123456.8"),
            (1e20, "1e20"),
            (-1.25e100, "-1.25e100"),
            (1.5e-7, "0.00000015"),
            (1e-15, "0.000000000000001"),
            (1e-16, "1e-16"),
            (2.5e-300, "2.5e-300"),
            (f64::MAX, "1.7976931348623157e308"),
            (5e-324, "5e-324"),
        ] {
            assert_eq!(json_double(d), want, "{d:e}");
        }
    }

    #[test]
    fn scalars_and_strings_print_as_mysql_does() {
        assert_eq!(text(&[0x04, 0x00]), "null");
        assert_eq!(text(&[0x04, 0x01]), "true");
        assert_eq!(text(&[0x04, 0x02]), "false");
        assert_eq!(text(&[0x05, 0xff, 0xff]), "-1");
        assert_eq!(text(&[0x06, 0xff, 0xff]), "65535");
        assert_eq!(
            text(&[0x09, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            "9223372036854775807"
        );
        assert_eq!(
            text(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            "18446744073709551615"
        );
        let mut double = vec![0x0b];
        double.extend_from_slice(&3.0f64.to_le_bytes());
        assert_eq!(text(&double), "3.0");
        // Escapes: quote, backslash, the five named controls, others as
        // \u00xx; '/' and non-ASCII pass through.
        let s = "a\"b\\c\u{8}\u{c}\n\r\t\u{1}\u{1f}/é€";
        let mut doc = vec![0x0c, s.len() as u8];
        doc.extend_from_slice(s.as_bytes());
        assert_eq!(text(&doc), r#""a\"b\\c\b\f\n\r\t\u0001\u001f/é€""#);
    }

    #[test]
    fn containers_keep_stored_order_with_mysqls_spacing() {
        // {"b": [1, "x"], "aa": {}} as MySQL stores it: keys by length.
        // Small object: count 2, size, two key entries, two value entries.
        let mut inner_array = vec![2, 0, 0, 0];
        inner_array.extend_from_slice(&[0x05, 1, 0]); // int16 1 inline
        inner_array.extend_from_slice(&[0x0c, 10, 0]); // string at 10
        inner_array.extend_from_slice(&[1, b'x']);
        inner_array[2] = inner_array.len() as u8;
        let empty_object = vec![0, 0, 4, 0];
        let header = 4 + 2 * 4 + 2 * 3;
        let keys_at = header;
        let array_at = keys_at + 3;
        let object_at = array_at + inner_array.len();
        let mut doc = vec![2, 0, 0, 0];
        doc.extend_from_slice(&[keys_at as u8, 0, 1, 0]);
        doc.extend_from_slice(&[keys_at as u8 + 1, 0, 2, 0]);
        doc.extend_from_slice(&[0x02, array_at as u8, 0]);
        doc.extend_from_slice(&[0x00, object_at as u8, 0]);
        doc.extend_from_slice(b"baa");
        doc.extend_from_slice(&inner_array);
        doc.extend_from_slice(&empty_object);
        doc[2] = doc.len() as u8;
        let mut whole = vec![0x00];
        whole.extend_from_slice(&doc);
        assert_eq!(text(&whole), r#"{"b": [1, "x"], "aa": {}}"#);
        assert_eq!(text(&[0x02, 0, 0, 4, 0]), "[]");
    }

    #[test]
    fn opaque_decimals_print_with_their_scale() {
        // DECIMAL(3,2) 9.00: intg 1 digit (1 byte), frac 2 digits (1 byte).
        assert_eq!(opaque(246, &[3, 2, 0x89, 0x00]), "9.00");
        // DECIMAL(6,3) 123.456
        assert_eq!(opaque(246, &[6, 3, 0x80, 0x7b, 0x01, 0xc8]), "123.456");
        // DECIMAL(4,2) -1.50: every bit inverted.
        assert_eq!(opaque(246, &[4, 2, !0x81, !50]), "-1.50");
        // DECIMAL(4,2) 0.05
        assert_eq!(opaque(246, &[4, 2, 0x80, 5]), "0.05");
        // DECIMAL(20,0) 12345678901234567890 across 9-digit groups.
        let mut big = vec![20, 0, 0x80 | 12];
        big.extend_from_slice(&345_678_901u32.to_be_bytes());
        big.extend_from_slice(&234_567_890u32.to_be_bytes());
        assert_eq!(opaque(246, &big), "12345678901234567890");
        assert!(matches!(
            to_mysql_text(&ParseBuf(&[0x0f, 246, 1, 3][..]).parse(()).unwrap()),
            Err(JsonTextError::Opaque {
                kind: "DECIMAL",
                ..
            })
        ));
    }

    #[test]
    fn opaque_dates_and_times_print_with_six_fraction_digits() {
        let date = packed_datetime(2012, 3, 18, 0, 0, 0, 0);
        assert_eq!(opaque(10, &date), r#""2012-03-18""#);
        let dt = packed_datetime(2012, 3, 18, 11, 30, 45, 0);
        assert_eq!(opaque(12, &dt), r#""2012-03-18 11:30:45.000000""#);
        assert_eq!(opaque(7, &dt), r#""2012-03-18 11:30:45.000000""#);
        let dt = packed_datetime(1999, 12, 31, 23, 59, 59, 120);
        assert_eq!(opaque(12, &dt), r#""1999-12-31 23:59:59.000120""#);
        let time = |h: i64, m: i64, s: i64, us: i64| (((h << 12) | (m << 6) | s) << 24) + us;
        let t = time(87, 31, 46, 654_321);
        assert_eq!(opaque(11, &t.to_le_bytes()), r#""87:31:46.654321""#);
        assert_eq!(opaque(11, &(-t).to_le_bytes()), r#""-87:31:46.654321""#);
        assert_eq!(
            opaque(11, &time(838, 59, 59, 0).to_le_bytes()),
            r#""838:59:59.000000""#
        );
        assert_eq!(
            opaque(11, &time(1, 2, 3, 0).to_le_bytes()),
            r#""01:02:03.000000""#
        );
        assert!(matches!(
            to_mysql_text(&ParseBuf(&[0x0f, 11, 2, 1, 2][..]).parse(()).unwrap()),
            Err(JsonTextError::Opaque { kind: "TIME", .. })
        ));
    }

    #[test]
    fn other_opaques_print_as_mysql_base64() {
        assert_eq!(opaque(15, b"U"), r#""base64:type15:VQ==""#);
        assert_eq!(opaque(252, b"ab"), r#""base64:type252:YWI=""#);
        assert_eq!(opaque(16, &[0xff, 0, 1]), r#""base64:type16:/wAB""#);
        // VAR_STRING opaques are strings.
        assert_eq!(opaque(253, b"a\"b"), r#""a\"b""#);
        // 58 bytes make 80 characters: a newline (escaped) after 76.
        let long = vec![0u8; 58];
        let want = format!("\"base64:type252:{}\\n{}\"", "A".repeat(76), "AA==");
        assert_eq!(opaque(252, &long), want);
    }

    #[test]
    fn nesting_past_mysqls_limit_is_refused() {
        // Each level: a small array of one element pointing at the next.
        fn nest(levels: usize) -> Vec<u8> {
            let mut doc = vec![0x02, 0, 0, 4, 0]; // innermost: []
            for _ in 1..levels {
                let mut next = vec![0x02, 1, 0, 0, 0, 0x02, 7, 0];
                next.extend_from_slice(&doc[1..]);
                let size = (next.len() - 1) as u16;
                next[3..5].copy_from_slice(&size.to_le_bytes());
                doc = next;
            }
            doc
        }
        let three = nest(3);
        let ok: Value<'_> = ParseBuf(&three).parse(()).unwrap();
        assert_eq!(to_mysql_text(&ok).unwrap(), b"[[[]]]");
        let at_limit = nest(MAX_DEPTH);
        let v: Value<'_> = ParseBuf(&at_limit).parse(()).unwrap();
        assert!(to_mysql_text(&v).is_ok());
        let deep = nest(MAX_DEPTH + 1);
        let v: Value<'_> = ParseBuf(&deep).parse(()).unwrap();
        assert!(matches!(to_mysql_text(&v), Err(JsonTextError::TooDeep)));
    }
}
