//! How big a packet the replica must accept to apply a transaction.
//!
//! A replica refuses any statement (or long-data parameter) larger than
//! its `max_allowed_packet` and drops the connection, which looks like a
//! network failure. Native replication is not bound by it (its applier
//! uses `slave_max_allowed_packet`, 1 GiB); rowcast applies through an
//! ordinary client session and is. So when applying fails, the size a
//! transaction needs is compared with the replica's limit: a transaction
//! that cannot fit is a permanent error naming the setting and its needed
//! value, never a reason to reconnect and try again forever.

use crate::log::change::{Change, Row, Transaction, Value};

/// Statement text, column names and packet headers around the values.
const OVERHEAD: u64 = 64 << 10;

/// The largest packet applying `txn` takes: its biggest row (an UPDATE's
/// two images together) sent as statement parameters, or its biggest
/// ROWS event sent as base64 in a `BINLOG` statement.
pub fn needed_bytes(txn: &Transaction) -> u64 {
    let row = |r: &Row| r.iter().map(value_bytes).sum::<u64>();
    let rows = txn
        .changes
        .iter()
        .map(|c| match c {
            Change::Insert { rows, .. } | Change::Delete { rows, .. } => {
                rows.iter().map(row).max().unwrap_or(0)
            }
            Change::Update { rows, .. } => {
                rows.iter().map(|(b, a)| row(b) + row(a)).max().unwrap_or(0)
            }
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    let events = txn
        .events
        .iter()
        .flat_map(|e| e.rows.iter().flatten())
        .map(|e| (e.len() as u64).div_ceil(3) * 4)
        .max()
        .unwrap_or(0);
    rows.max(events) + OVERHEAD
}

fn value_bytes(v: &Value) -> u64 {
    match v {
        Value::Bytes(b) | Value::Json(b) => b.len() as u64,
        Value::Decimal(s) => s.len() as u64,
        Value::JsonDiff(edits) => edits
            .iter()
            .map(|e| (e.path.len() + e.value.as_ref().map_or(0, |v| v.len())) as u64)
            .sum(),
        _ => 16,
    }
}

/// `needed` rounded up to whole MiB, the way the setting is written.
pub fn as_setting(needed: u64) -> String {
    format!("{}M", needed.div_ceil(1 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::position::SourcePosition;

    #[test]
    fn the_biggest_row_decides() {
        let txn = Transaction {
            position: SourcePosition::new("b.000001", 4),
            changes: vec![Change::Insert {
                table: 0,
                rows: vec![
                    vec![Value::Int(1), Value::Bytes(vec![0; 10])],
                    vec![Value::Int(2), Value::Bytes(vec![0; 20 << 20])],
                ],
            }],
            timestamp: 0,
            part: 0,
            more: false,
            tables: Vec::new(),
            events: None,
            xa: None,
        };
        let n = needed_bytes(&txn);
        assert!(n > 20 << 20 && n < 21 << 20, "{n}");
        assert_eq!(as_setting(n), "21M");
    }
}
