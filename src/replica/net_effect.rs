//! The net effect of several source transactions, per primary key: what
//! lets the applier replace hundreds of single-row statements with a few
//! multi-row ones while still committing the transactions as one unit.
//!
//! For every key a batch touches, what matters is whether the row existed
//! before the batch and how it looks after. Applied as "delete every key
//! that existed, then insert every final row", the replica ends exactly
//! where applying the transactions one by one would have left it, and no
//! intermediate state can trip a unique key: the rows being rewritten are
//! all gone before any final row goes in.
//!
//! A batch is split by table. Tables this module cannot reason about
//! (without a primary key, with partial images, partial JSON updates or
//! ENUM empty values, described two ways in one batch, or refused by the
//! caller because the replica's copy needs the row-event applier) are
//! *ordered*: their changes are applied one by one in the batch's order,
//! in the same local transaction as the net effect of the others. That
//! reordering between tables is safe because nothing on the replica links
//! a netted table to another: a table in a foreign key is never netted
//! (its cascades need the changes in order, so all tables of a foreign key
//! are ordered together), and the row-event applier that ordered tables
//! with triggers go through fires no triggers.
//!
//! The no-silent-skip rule still holds: the DELETE must remove exactly the
//! keys that existed and the INSERT must not hit a duplicate; any surprise
//! makes the applier roll back and apply the batch statement by statement,
//! which names the conflicting key. Batches whose order across tables
//! matters (DDL, rows of rowcast's checksum table, which hash other tables
//! at their point in the stream) return `None` and take that exact path
//! whole.

use std::collections::{HashMap, HashSet};

use crate::log::change::{Change, Row, TableSchema, Transaction, Value};
use crate::log::codec;

/// The net change of one table, borrowing the batch's rows (a batch holds
/// up to 20k of them: copying each was most of the applier's own work).
#[derive(Debug, Clone, PartialEq)]
pub struct NetTable<'a> {
    pub schema: &'a TableSchema,
    /// A row (only its key columns matter) for each key that existed
    /// before the batch and was changed or deleted by it.
    pub deletes: Vec<&'a Row>,
    /// The final image of each key that exists after the batch.
    pub inserts: Vec<&'a Row>,
}

/// A batch split by table: the net change of the tables that allow one,
/// and the tables whose changes are applied in order.
#[derive(Debug, Default)]
pub struct NetEffect<'a> {
    pub tables: Vec<NetTable<'a>>,
    /// Borrowed from the batch's schemas: asked once per change while the
    /// batch is applied, so no name is copied to ask it.
    ordered: HashSet<(&'a str, &'a str)>,
}

impl NetEffect<'_> {
    /// The changes of `schema`'s table are not in `tables` and are applied
    /// one by one, in the batch's order.
    pub fn is_ordered(&self, schema: &TableSchema) -> bool {
        self.ordered
            .contains(&(schema.database.as_str(), schema.name.as_str()))
    }

    pub fn ordered_tables(&self) -> usize {
        self.ordered.len()
    }
}

struct Entry<'a> {
    existed: bool,
    /// A row carrying the key, to delete it by.
    key_row: &'a Row,
    last: Option<&'a Row>,
}

struct TableState<'a> {
    schema: &'a TableSchema,
    entries: Vec<Entry<'a>>,
    index: HashMap<Vec<u8>, usize>,
}

impl<'a> TableState<'a> {
    fn key(&self, row: &Row) -> Option<Vec<u8>> {
        let key: Vec<&Value> = self
            .schema
            .primary_key
            .iter()
            .map(|&i| row.get(i as usize))
            .collect::<Option<_>>()?;
        codec::encode(&key).ok()
    }

    fn insert(&mut self, row: &'a Row) -> Option<()> {
        let key = self.key(row)?;
        match self.index.get(&key) {
            Some(&i) => {
                let e = &mut self.entries[i];
                // The key was present at this point: the source could not
                // have inserted it. Leave it to the exact path.
                if e.last.is_some() {
                    return None;
                }
                e.last = Some(row);
            }
            None => {
                self.index.insert(key, self.entries.len());
                self.entries.push(Entry {
                    existed: false,
                    key_row: row,
                    last: Some(row),
                });
            }
        }
        Some(())
    }

    fn remove(&mut self, row: &'a Row) -> Option<()> {
        let key = self.key(row)?;
        match self.index.get(&key) {
            Some(&i) => {
                let e = &mut self.entries[i];
                e.last.as_ref()?;
                e.last = None;
            }
            None => {
                self.index.insert(key, self.entries.len());
                self.entries.push(Entry {
                    existed: true,
                    key_row: row,
                    last: None,
                });
            }
        }
        Some(())
    }

    fn update(&mut self, before: &'a Row, after: &'a Row) -> Option<()> {
        let (kb, ka) = (self.key(before)?, self.key(after)?);
        if kb != ka {
            // A changed primary key: the old row goes, the new one comes.
            self.remove(before)?;
            return self.insert(after);
        }
        match self.index.get(&kb) {
            Some(&i) => {
                let e = &mut self.entries[i];
                e.last.as_ref()?;
                e.last = Some(after);
            }
            None => {
                self.index.insert(kb, self.entries.len());
                self.entries.push(Entry {
                    existed: true,
                    key_row: before,
                    last: Some(after),
                });
            }
        }
        Some(())
    }
}

/// Rows a multi-row INSERT can write back: not a partial JSON update, and
/// not an ENUM's empty value, which no strict statement accepts (the
/// applier replays those through the primary's events instead).
fn plain(rows: &[Row]) -> bool {
    rows.iter().all(|r| {
        !r.iter()
            .any(|v| matches!(v, Value::JsonDiff(_) | Value::Enum(0)))
    })
}

/// The net effect of `txns` (in order), or `None` when the batch must be
/// applied statement by statement in its order. `is_special` marks tables
/// whose rows need the applier's own handling at their point in the stream
/// (rowcast's checksum table); `may_net` says whether the replica's copy
/// of a table may be written as a net effect (`TableFacts::net_ok`).
pub fn net_effect<'a>(
    txns: &[&'a Transaction],
    is_special: impl Fn(&TableSchema) -> bool,
    may_net: impl Fn(&TableSchema) -> bool,
) -> Option<NetEffect<'a>> {
    // First every table that must be ordered, whichever change says so:
    // a table's state is only worth building once it is known to net.
    let mut seen: HashMap<(&str, &str), &TableSchema> = HashMap::new();
    let mut ordered: HashSet<(&'a str, &'a str)> = HashSet::new();
    for txn in txns {
        for change in &txn.changes {
            let (slot, rows_ok) = match change {
                Change::Insert { table, rows } | Change::Delete { table, rows } => {
                    (*table, plain(rows))
                }
                Change::Update { table, rows } => (
                    *table,
                    rows.iter().all(|(b, a)| {
                        plain(std::slice::from_ref(b)) && plain(std::slice::from_ref(a))
                    }),
                ),
                // Its rows are not known: only its raw events apply it.
                Change::PartialImage { table, .. } => (*table, false),
                Change::Ddl(_) => return None,
            };
            let schema = txn.tables.get(slot as usize)?;
            if is_special(schema) {
                return None;
            }
            let name = (schema.database.as_str(), schema.name.as_str());
            // Same name, other columns: not something to merge.
            let same = *seen.entry(name).or_insert(schema) == schema;
            if !same || !rows_ok || schema.primary_key.is_empty() || !may_net(schema) {
                ordered.insert(name);
            }
        }
    }
    let mut tables: Vec<TableState<'a>> = Vec::new();
    let mut by_name: HashMap<(&str, &str), usize> = HashMap::new();
    for txn in txns {
        for change in &txn.changes {
            // (A partial image's table is ordered: skipped below.)
            let Some(slot) = change.table() else { continue };
            let schema = txn.tables.get(slot as usize)?;
            let name = (schema.database.as_str(), schema.name.as_str());
            if ordered.contains(&name) {
                continue;
            }
            let i = *by_name.entry(name).or_insert_with(|| {
                tables.push(TableState {
                    schema,
                    entries: Vec::new(),
                    index: HashMap::new(),
                });
                tables.len() - 1
            });
            let state = &mut tables[i];
            match change {
                Change::Insert { rows, .. } => {
                    for r in rows {
                        state.insert(r)?;
                    }
                }
                Change::Delete { rows, .. } => {
                    for r in rows {
                        state.remove(r)?;
                    }
                }
                Change::Update { rows, .. } => {
                    for (b, a) in rows {
                        state.update(b, a)?;
                    }
                }
                Change::PartialImage { .. } | Change::Ddl(_) => continue,
            }
        }
    }
    let tables = tables
        .into_iter()
        .map(|t| {
            let mut deletes = Vec::new();
            let mut inserts = Vec::new();
            for e in t.entries {
                if e.existed {
                    deletes.push(e.key_row);
                }
                if let Some(row) = e.last {
                    inserts.push(row);
                }
            }
            NetTable {
                schema: t.schema,
                deletes,
                inserts,
            }
        })
        .collect();
    Some(NetEffect { tables, ordered })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(name: &str, key: bool) -> TableSchema {
        TableSchema::of_ints(name, &["id", "v"], if key { vec![0] } else { vec![] })
    }

    fn row(id: i64, v: i64) -> Row {
        vec![Value::Int(id), Value::Int(v)]
    }

    fn txn(changes: Vec<Change>) -> Transaction {
        Transaction {
            tables: vec![schema("t", true), schema("nokey", false)],
            changes,
            ..Transaction::empty_at(4, 0)
        }
    }

    #[test]
    fn an_empty_enum_value_has_no_net_effect() {
        let enum_row = |e| vec![Value::UInt(1), Value::Enum(e)];
        let with = |e| {
            txn(vec![Change::Insert {
                table: 0,
                rows: vec![enum_row(e)],
            }])
        };
        // The table's changes are replayed in order.
        let (empty, valid) = (with(0), with(1));
        let net = net_effect(&[&empty], |_| false, |_| true).unwrap();
        assert!(net.tables.is_empty() && net.is_ordered(&schema("t", true)));
        let net = net_effect(&[&valid], |_| false, |_| true).unwrap();
        assert!(net.tables.len() == 1 && net.ordered_tables() == 0);
    }

    #[test]
    fn partial_images_have_no_net_effect() {
        // Rows rowcast does not know can only be replayed, in order, and so
        // is every change of their table, before the partial one or after.
        let full = txn(vec![Change::Insert {
            table: 0,
            rows: vec![row(1, 1)],
        }]);
        let partial = txn(vec![Change::PartialImage { table: 0, rows: 1 }]);
        for batch in [[&full, &partial], [&partial, &full]] {
            let net = net_effect(&batch, |_| false, |_| true).unwrap();
            assert!(net.tables.is_empty() && net.is_ordered(&schema("t", true)));
        }
        let net = net_effect(&[&full], |_| false, |_| true).unwrap();
        assert!(net.tables.len() == 1 && !net.is_ordered(&schema("t", true)));
    }

    #[test]
    fn keys_end_as_the_last_transaction_left_them() {
        // The shape of sysbench's oltp_write_only, twice on the same keys.
        let a = txn(vec![
            Change::Update {
                table: 0,
                rows: vec![(row(1, 10), row(1, 11))],
            },
            Change::Delete {
                table: 0,
                rows: vec![row(2, 20)],
            },
            Change::Insert {
                table: 0,
                rows: vec![row(2, 21)],
            },
            Change::Insert {
                table: 0,
                rows: vec![row(3, 30)],
            },
        ]);
        let b = txn(vec![
            Change::Update {
                table: 0,
                rows: vec![(row(1, 11), row(1, 12)), (row(3, 30), row(3, 31))],
            },
            Change::Delete {
                table: 0,
                rows: vec![row(2, 21)],
            },
            // A primary key change moves the row.
            Change::Update {
                table: 0,
                rows: vec![(row(4, 40), row(5, 40))],
            },
        ]);
        let net = net_effect(&[&a, &b], |_| false, |_| true).unwrap();
        assert_eq!(net.tables.len(), 1);
        let t = &net.tables[0];
        let ids = |rows: &[&Row]| rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>();
        // 1, 2 and 4 existed before; 3 and 5 did not.
        assert_eq!(
            ids(&t.deletes),
            vec![Value::Int(1), Value::Int(2), Value::Int(4)]
        );
        assert_eq!(t.inserts, vec![&row(1, 12), &row(3, 31), &row(5, 40)]);
    }

    #[test]
    fn what_cannot_be_merged_takes_the_exact_path() {
        let nokey = txn(vec![Change::Insert {
            table: 1,
            rows: vec![row(1, 1)],
        }]);
        let net = net_effect(&[&nokey], |_| false, |_| true).unwrap();
        assert!(net.tables.is_empty() && net.is_ordered(&schema("nokey", false)));
        // Rows of the checksum table hash other tables where they stand in
        // the stream: nothing in their batch may move.
        let special = txn(vec![Change::Insert {
            table: 0,
            rows: vec![row(1, 1)],
        }]);
        assert!(net_effect(&[&special, &nokey], |s| s.name == "t", |_| true).is_none());
        // Inserting a key the batch already holds, or deleting one it
        // already deleted, is a conflict for the exact path to name.
        let twice = txn(vec![Change::Insert {
            table: 0,
            rows: vec![row(1, 1), row(1, 2)],
        }]);
        assert!(net_effect(&[&twice], |_| false, |_| true).is_none());
        let gone = txn(vec![
            Change::Delete {
                table: 0,
                rows: vec![row(1, 1)],
            },
            Change::Update {
                table: 0,
                rows: vec![(row(1, 1), row(1, 2))],
            },
        ]);
        assert!(net_effect(&[&gone], |_| false, |_| true).is_none());
        let json = txn(vec![Change::Update {
            table: 0,
            rows: vec![(row(1, 1), vec![Value::Int(1), Value::JsonDiff(vec![])])],
        }]);
        let net = net_effect(&[&json], |_| false, |_| true).unwrap();
        assert!(net.tables.is_empty() && net.is_ordered(&schema("t", true)));
    }

    #[test]
    fn a_mixed_batch_nets_what_it_can_and_orders_the_rest() {
        let t = txn(vec![
            Change::Insert {
                table: 1,
                rows: vec![row(1, 1)],
            },
            Change::Update {
                table: 0,
                rows: vec![(row(1, 1), row(1, 2))],
            },
            Change::Update {
                table: 0,
                rows: vec![(row(1, 2), row(1, 3))],
            },
            Change::Delete {
                table: 1,
                rows: vec![row(1, 1)],
            },
        ]);
        let net = net_effect(&[&t], |_| false, |_| true).unwrap();
        assert_eq!(net.tables.len(), 1);
        assert_eq!(net.tables[0].inserts, vec![&row(1, 3)]);
        assert!(!net.is_ordered(&schema("t", true)));
        assert!(net.is_ordered(&schema("nokey", false)));
        // A table the replica may not take as a net effect (triggers,
        // foreign keys, other columns) is ordered too.
        let net = net_effect(&[&t], |_| false, |s| s.name != "t").unwrap();
        assert!(net.tables.is_empty() && net.ordered_tables() == 2);
        // One table described two ways in one batch is not merged.
        let mut other = t.clone();
        other.tables[0] = TableSchema::of_ints("t", &["id", "w"], vec![0]);
        let net = net_effect(&[&t, &other], |_| false, |_| true).unwrap();
        assert!(net.is_ordered(&schema("t", true)));
    }

    #[test]
    fn an_insert_then_delete_in_the_batch_leaves_nothing_to_do() {
        let t = txn(vec![
            Change::Insert {
                table: 0,
                rows: vec![row(7, 1)],
            },
            Change::Delete {
                table: 0,
                rows: vec![row(7, 1)],
            },
        ]);
        let net = net_effect(&[&t], |_| false, |_| true).unwrap();
        assert!(net.tables[0].deletes.is_empty() && net.tables[0].inserts.is_empty());
    }
}
