//! Replaying the primary's own row events on the replica through a
//! `BINLOG '<base64>'` statement, the way `mariadb-binlog | mariadb` does.
//!
//! The statement hands the events to the server's row-event applier, the
//! same code a native replica's SQL thread runs. That is the only way a
//! client session gets native row-based semantics, and some tables need
//! them (`TablePlan::native` says which):
//!
//! - a replica table with triggers: the binlog already holds every row the
//!   primary's triggers wrote, and the row-event applier does not fire
//!   triggers (an ordinary INSERT would fire them a second time);
//! - a table in a foreign key: the effects of ON DELETE/UPDATE CASCADE and
//!   SET NULL are not in the binlog, the replica's InnoDB performs them,
//!   and each event's own `foreign_key_checks` flag is honoured;
//! - a table without a primary key: the applier finds a row by comparing
//!   its stored bytes, not under the column's collation;
//! - a system-versioned table: its row_start/row_end and history are kept;
//! - any table, for a change with partial row images (a session's
//!   `binlog_row_image=MINIMAL` or `NOBLOB`, `Change::PartialImage`): the
//!   applier finds each row by the columns the before image has and leaves
//!   the others as they are, which no statement rowcast builds could do.
//!
//! An event is sent as the primary wrote it, with two edits: the event size
//! and checksum are recomputed (the change format keeps events without
//! their checksum), and only the last ROWS event of a change carries the
//! end-of-statement flag, because the applier releases its table maps at
//! that flag and one change may merge several source statements.
//!
//! The session must have executed the primary's FORMAT_DESCRIPTION event
//! first (`format_statement`); the applier keeps it for the connection.

use crate::log::change::RowEvents;

/// The end-of-statement flag of a ROWS event (post-header, after the
/// 6-byte table id).
const STMT_END_F: u16 = 1;
const HEADER_LEN: usize = 19;
const ROWS_FLAGS_AT: usize = HEADER_LEN + 6;

/// Raw event bytes per BINLOG statement, so the statement (4/3 of that in
/// base64) stays under the replica's default 16 MiB max_allowed_packet.
/// A single bigger event is sent alone.
pub const STATEMENT_BYTES: usize = 4 << 20;

/// `BINLOG '...'` with the primary's FORMAT_DESCRIPTION event.
pub fn format_statement(events: &RowEvents) -> String {
    let mut out = String::with_capacity(events.format.len() * 4 / 3 + 16);
    out.push_str("BINLOG '\n");
    base64_into(&events.format, &mut out);
    out.push_str("\n'");
    out
}

/// The BINLOG statements that apply change `change` (on table `table`) of
/// a transaction: the table's TABLE_MAP event, then the change's ROWS
/// events, cut into statements of about `max_bytes`. `None` when the
/// events for that change are missing.
pub fn change_statements(
    events: &RowEvents,
    table: u32,
    change: usize,
    max_bytes: usize,
) -> Option<Vec<String>> {
    let map = events.table_maps.get(table as usize)?;
    let rows = events.rows.get(change)?;
    if rows.is_empty() || map.len() < HEADER_LEN {
        return None;
    }
    let mut statements = Vec::new();
    let mut current = String::from("BINLOG '\n");
    base64_into(&seal(map, events.crc32, None), &mut current);
    let mut bytes = map.len();
    for (i, event) in rows.iter().enumerate() {
        if event.len() < ROWS_FLAGS_AT + 2 {
            return None;
        }
        if bytes > 0 && bytes + event.len() > max_bytes {
            current.push_str("\n'");
            statements.push(std::mem::replace(&mut current, String::from("BINLOG '\n")));
            bytes = 0;
        } else {
            current.push('\n');
        }
        let last = i + 1 == rows.len();
        base64_into(&seal(event, events.crc32, Some(last)), &mut current);
        bytes += event.len();
    }
    current.push_str("\n'");
    statements.push(current);
    Some(statements)
}

/// The event with its size field set and its checksum appended; for a
/// ROWS event, the end-of-statement flag set or cleared.
fn seal(raw: &[u8], crc32: bool, stmt_end: Option<bool>) -> Vec<u8> {
    let mut e = Vec::with_capacity(raw.len() + 4);
    e.extend_from_slice(raw);
    if let Some(end) = stmt_end {
        let mut flags = u16::from_le_bytes([e[ROWS_FLAGS_AT], e[ROWS_FLAGS_AT + 1]]);
        if end {
            flags |= STMT_END_F;
        } else {
            flags &= !STMT_END_F;
        }
        e[ROWS_FLAGS_AT..ROWS_FLAGS_AT + 2].copy_from_slice(&flags.to_le_bytes());
    }
    let size = (raw.len() + if crc32 { 4 } else { 0 }) as u32;
    e[9..13].copy_from_slice(&size.to_le_bytes());
    if crc32 {
        let crc = crc32fast::hash(&e);
        e.extend_from_slice(&crc.to_le_bytes());
    }
    e
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, what the server's BINLOG statement reads.
fn base64_into(bytes: &[u8], out: &mut String) {
    out.reserve(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = match chunk.len() {
            3 => u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]),
            2 => u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8,
            _ => u32::from(chunk[0]) << 16,
        };
        let sextet = |shift: u32| BASE64[((n >> shift) & 63) as usize] as char;
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        let mut s = String::new();
        base64_into(bytes, &mut s);
        s
    }

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(b64(plain.as_bytes()), encoded);
        }
    }

    fn event(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut e = vec![0u8; HEADER_LEN];
        e[4] = kind;
        e.extend_from_slice(body);
        e
    }

    fn rows_body(flags: u16) -> Vec<u8> {
        let mut b = vec![7, 0, 0, 0, 0, 0];
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(b"rows");
        b
    }

    #[test]
    fn only_the_last_rows_event_of_a_change_ends_the_statement() {
        let events = RowEvents {
            format: event(15, b"fde"),
            crc32: true,
            table_maps: vec![event(19, b"map")],
            rows: vec![vec![event(30, &rows_body(1)), event(30, &rows_body(0))]],
        };
        let stmts = change_statements(&events, 0, 0, STATEMENT_BYTES).unwrap();
        assert_eq!(stmts.len(), 1);
        let lines: Vec<&str> = stmts[0].lines().collect();
        assert_eq!(lines.len(), 5, "BINLOG ', map, two rows events, '");
        let first = seal(&events.rows[0][0], true, Some(false));
        let last = seal(&events.rows[0][1], true, Some(true));
        assert_eq!(lines[2], b64(&first));
        assert_eq!(lines[3], b64(&last));
        assert_eq!(first[ROWS_FLAGS_AT] & 1, 0);
        assert_eq!(last[ROWS_FLAGS_AT] & 1, 1);
        // Size field covers the checksum, which is the CRC32 of the rest.
        let size = u32::from_le_bytes(last[9..13].try_into().unwrap()) as usize;
        assert_eq!(size, last.len());
        let (body, crc) = last.split_at(last.len() - 4);
        assert_eq!(crc32fast::hash(body).to_le_bytes(), crc);
    }

    #[test]
    fn a_big_change_is_cut_into_several_statements() {
        let events = RowEvents {
            format: event(15, b"fde"),
            crc32: false,
            table_maps: vec![event(19, b"map")],
            rows: vec![(0..10).map(|_| event(30, &rows_body(0))).collect()],
        };
        let stmts = change_statements(&events, 0, 0, 80).unwrap();
        assert!(stmts.len() > 1);
        assert!(stmts
            .iter()
            .all(|s| s.starts_with("BINLOG '\n") && s.ends_with("\n'")));
        let events_sent: usize = stmts.iter().map(|s| s.lines().count() - 2).sum();
        assert_eq!(events_sent, 11, "the map once, then every rows event");
        assert!(change_statements(&events, 1, 0, 80).is_none());
        assert!(change_statements(&events, 0, 1, 80).is_none());
    }
}
