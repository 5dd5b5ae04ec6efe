//! A query event's status variables: the session context a statement ran
//! in on the primary (sql_mode, charsets, time zone, timestamp, option
//! bits...), read into [`Ddl`] so the replica runs it in the same one.
//!
//! This reads the raw bytes itself rather than through `mysql_common`'s
//! iterator: that one stops at MariaDB's own codes (`Q_HRNOW`, the
//! statement's microseconds, comes after them) and cannot read a 3-byte
//! microseconds value. As in the server, the variables come in growing
//! code order and an unknown code ends the reading, because its length is
//! unknown; the ones a replica needs all have lower codes.
//!
//! Pure: bytes in, fields out; no I/O.

use crate::log::change::Ddl;

// Codes from the servers' `log_event.h`; the same in MySQL and MariaDB up
// to 20, MariaDB's own from 128.
const Q_FLAGS2: u8 = 0;
const Q_SQL_MODE: u8 = 1;
const Q_CATALOG: u8 = 2;
const Q_AUTO_INCREMENT: u8 = 3;
const Q_CHARSET: u8 = 4;
const Q_TIME_ZONE: u8 = 5;
const Q_CATALOG_NZ: u8 = 6;
const Q_LC_TIME_NAMES: u8 = 7;
const Q_CHARSET_DATABASE: u8 = 8;
const Q_TABLE_MAP_FOR_UPDATE: u8 = 9;
const Q_MASTER_DATA_WRITTEN: u8 = 10;
const Q_INVOKER: u8 = 11;
const Q_UPDATED_DB_NAMES: u8 = 12;
const Q_MICROSECONDS: u8 = 13;
const Q_COMMIT_TS: u8 = 14;
const Q_COMMIT_TS2: u8 = 15;
const Q_EXPLICIT_DEFAULTS_FOR_TIMESTAMP: u8 = 16;
const Q_DDL_LOGGED_WITH_XID: u8 = 17;
const Q_DEFAULT_COLLATION_FOR_UTF8MB4: u8 = 18;
const Q_SQL_REQUIRE_PRIMARY_KEY: u8 = 19;
const Q_DEFAULT_TABLE_ENCRYPTION: u8 = 20;
const Q_HRNOW: u8 = 128;
const Q_XID: u8 = 129;
const Q_GTID_FLAGS3: u8 = 130;
/// `Q_UPDATED_DB_NAMES` count meaning "too many to list", with no names.
const OVER_MAX_DBS: u8 = 254;

/// Reads the status variables in `raw` into `ddl`'s session fields.
pub fn read_into(raw: &[u8], ddl: &mut Ddl) {
    let mut r = Reader { b: raw, i: 0 };
    while let Some(code) = r.u8() {
        if read_one(&mut r, code, ddl).is_none() {
            tracing::debug!(
                code,
                "unknown or short query status variable; reading stops"
            );
            return;
        }
    }
}

fn read_one(r: &mut Reader<'_>, code: u8, ddl: &mut Ddl) -> Option<()> {
    match code {
        Q_FLAGS2 => ddl.flags2 = Some(r.uint(4)? as u32),
        Q_SQL_MODE => ddl.sql_mode = Some(r.uint(8)?),
        Q_CATALOG => {
            let n = r.u8()? as usize;
            r.take(n + 1)?;
        }
        Q_AUTO_INCREMENT => {
            let increment = r.uint(2)? as u16;
            let offset = r.uint(2)? as u16;
            ddl.auto_increment = Some((increment, offset));
        }
        Q_CHARSET => {
            let client = r.uint(2)? as u16;
            let connection = r.uint(2)? as u16;
            let server = r.uint(2)? as u16;
            ddl.charset = Some((client, connection, server));
        }
        Q_TIME_ZONE => {
            let n = r.u8()? as usize;
            let tz = r.take(n)?;
            if !tz.is_empty() {
                ddl.time_zone = Some(String::from_utf8_lossy(tz).into_owned());
            }
        }
        Q_CATALOG_NZ => {
            let n = r.u8()? as usize;
            r.take(n)?;
        }
        Q_LC_TIME_NAMES => ddl.lc_time_names = Some(r.uint(2)? as u16),
        Q_CHARSET_DATABASE => ddl.collation_database = Some(r.uint(2)? as u16),
        Q_TABLE_MAP_FOR_UPDATE => {
            r.take(8)?;
        }
        Q_MASTER_DATA_WRITTEN => {
            r.take(4)?;
        }
        Q_INVOKER => {
            let n = r.u8()? as usize;
            r.take(n)?;
            let n = r.u8()? as usize;
            r.take(n)?;
        }
        Q_UPDATED_DB_NAMES => {
            let count = r.u8()?;
            if count != OVER_MAX_DBS {
                for _ in 0..count {
                    while r.u8()? != 0 {}
                }
            }
        }
        Q_MICROSECONDS | Q_HRNOW => ddl.timestamp_micros = Some(r.uint(3)? as u32),
        Q_COMMIT_TS | Q_COMMIT_TS2 => {}
        Q_EXPLICIT_DEFAULTS_FOR_TIMESTAMP => {
            ddl.explicit_defaults_for_timestamp = Some(r.u8()? != 0)
        }
        Q_DDL_LOGGED_WITH_XID | Q_XID => {
            r.take(8)?;
        }
        Q_DEFAULT_COLLATION_FOR_UTF8MB4 => {
            ddl.default_collation_for_utf8mb4 = Some(r.uint(2)? as u16)
        }
        Q_SQL_REQUIRE_PRIMARY_KEY | Q_DEFAULT_TABLE_ENCRYPTION | Q_GTID_FLAGS3 => {
            r.take(1)?;
        }
        _ => return None,
    }
    Some(())
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    /// Little-endian unsigned integer of `n` bytes.
    fn uint(&mut self, n: usize) -> Option<u64> {
        let s = self.take(n)?;
        Some(
            s.iter()
                .rev()
                .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_mariadb_ddl_context_up_to_its_microseconds() {
        let mut raw = vec![Q_FLAGS2];
        raw.extend(0x0400_0000u32.to_le_bytes()); // no foreign key checks
        raw.push(Q_SQL_MODE);
        raw.extend(0x5580_0000u64.to_le_bytes());
        raw.extend([Q_CATALOG_NZ, 3, b's', b't', b'd']);
        raw.push(Q_AUTO_INCREMENT);
        raw.extend([5, 0, 2, 0]);
        raw.push(Q_CHARSET);
        raw.extend([33, 0, 33, 0, 8, 0]);
        raw.extend([Q_TIME_ZONE, 6]);
        raw.extend(b"+05:00");
        raw.extend([Q_LC_TIME_NAMES, 1, 0]);
        raw.extend([Q_CHARSET_DATABASE, 45, 0]);
        raw.extend([Q_INVOKER, 4, b'r', b'o', b'o', b't', 0]);
        raw.extend([Q_UPDATED_DB_NAMES, 2, b'a', 0, b'b', b'c', 0]);
        raw.extend([Q_HRNOW, 0x40, 0xe2, 0x01]); // 123456
        raw.extend([Q_XID, 1, 2, 3, 4, 5, 6, 7, 8]);
        raw.extend([Q_GTID_FLAGS3, 1]);
        let mut ddl = Ddl::default();
        read_into(&raw, &mut ddl);
        assert_eq!(ddl.flags2, Some(0x0400_0000));
        assert_eq!(ddl.sql_mode, Some(0x5580_0000));
        assert_eq!(ddl.auto_increment, Some((5, 2)));
        assert_eq!(ddl.charset, Some((33, 33, 8)));
        assert_eq!(ddl.time_zone.as_deref(), Some("+05:00"));
        assert_eq!(ddl.lc_time_names, Some(1));
        assert_eq!(ddl.collation_database, Some(45));
        assert_eq!(ddl.timestamp_micros, Some(123_456));
    }

    #[test]
    fn reads_mysql_only_variables() {
        let mut raw = vec![Q_UPDATED_DB_NAMES, OVER_MAX_DBS, Q_MICROSECONDS, 1, 0, 0];
        raw.extend([Q_EXPLICIT_DEFAULTS_FOR_TIMESTAMP, 1]);
        raw.extend([Q_DDL_LOGGED_WITH_XID, 0, 0, 0, 0, 0, 0, 0, 0]);
        raw.extend([Q_DEFAULT_COLLATION_FOR_UTF8MB4, 255, 0]);
        raw.extend([Q_SQL_REQUIRE_PRIMARY_KEY, 0, Q_DEFAULT_TABLE_ENCRYPTION, 0]);
        let mut ddl = Ddl::default();
        read_into(&raw, &mut ddl);
        assert_eq!(ddl.timestamp_micros, Some(1));
        assert_eq!(ddl.explicit_defaults_for_timestamp, Some(true));
        assert_eq!(ddl.default_collation_for_utf8mb4, Some(255));
    }

    #[test]
    fn an_unknown_code_or_a_short_value_ends_the_reading() {
        let mut ddl = Ddl::default();
        read_into(
            &[
                Q_SQL_MODE, 1, 2, 3, 4, 5, 6, 7, 0, 77, 9, Q_FLAGS2, 1, 0, 0, 0,
            ],
            &mut ddl,
        );
        assert_eq!(ddl.sql_mode, Some(0x0007_0605_0403_0201));
        assert_eq!(ddl.flags2, None);
        let mut ddl = Ddl::default();
        read_into(&[Q_CHARSET, 33, 0, 33], &mut ddl);
        assert_eq!(ddl.charset, None);
        read_into(&[Q_TIME_ZONE, 200, b'x'], &mut ddl);
        assert_eq!(ddl.time_zone, None);
    }
}
