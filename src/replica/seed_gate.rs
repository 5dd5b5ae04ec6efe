//! While a slave is being seeded: which changes of the stream it applies
//! and which the seed's chunks bring instead.
//!
//! The slave reads the change stream from the seed's start position S0
//! (every replicated table is created empty at S0) while the chunks of
//! each table arrive (`source/chunk_read.rs`). A chunk holds the rows of a
//! key range exactly as they were at its position P: every transaction
//! ending at or before P is in it, none after. The master sends it before
//! any transaction ending after P (it pauses the stream while chunks are
//! read, and their positions come after everything sent before). So for a
//! row change of a table being seeded, at position T, on key K:
//! - K lies in a loaded chunk read at P: the change is applied if T > P
//!   (the chunk did not see it) and dropped if T <= P (the chunk holds
//!   its effect);
//! - K lies in no loaded chunk: dropped. The chunk that will hold K is
//!   read later, at a position after T (the chunks read before T were all
//!   sent before T), and will hold its effect.
//!
//! By induction over the stream, every loaded key range equals the
//! primary's at the position applied, and when every range is loaded the
//! table does. An UPDATE whose key moves between a range that applies it
//! and one that does not becomes the DELETE or the INSERT alone. A whole
//! table (one read, one position) is a single range; tables in foreign
//! keys are read together at one position, so the rows a cascade on the
//! replica reaches are those the primary's cascade reached. Once the
//! stream has passed a chunk's position the chunk's keys apply everything
//! (`strict_upto`), and a table whose ranges are all loaded and passed
//! leaves the gate.
//!
//! A prepared XA transaction's rows become visible to a read only at its
//! `XA COMMIT`: its rows are judged at the commit's position, when they
//! are applied.

use std::collections::HashMap;

use crate::log::change::{Change, Row, TableSchema, Transaction};
use crate::source::position::SourcePosition;
use crate::source::seed_plan::{key_value, Key, LoadedChunk, SeedChunk, SeedRange, SeedTable};

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error(
        "a session on the primary changed {table} with binlog_row_image MINIMAL or NOBLOB at {position} \
         while the table was being copied, so which of its rows the copy already holds cannot be told; \
         run the slave with `--resync {table}` to copy that table again"
    )]
    PartialImage { table: String, position: String },
    #[error(
        "{table} was renamed on the primary at {position} while it was being copied; the slave applied \
         the rename and stopped: restart it with `--resync DB.NEWNAME` (the table's new name) to copy it again"
    )]
    Renamed { table: String, position: String },
    #[error(
        "the key column `{column}` of {table} is gone from the table at {position} (renamed or dropped on \
         the primary while the table was being copied), so which of its rows the copy holds cannot be told; \
         restart the slave with `--resync {table}` to copy it again by its new key"
    )]
    KeyGone {
        table: String,
        column: String,
        position: String,
    },
}

/// The tables still being seeded, by `(database, table)`.
#[derive(Debug, Default)]
pub struct SeedGate {
    tables: HashMap<(String, String), SeedTable>,
    /// Tables that left the gate since the last look (to create their
    /// triggers, drop their progress rows).
    finished: Vec<(String, String)>,
}

impl SeedGate {
    pub fn new(tables: Vec<SeedTable>) -> SeedGate {
        SeedGate {
            tables: tables
                .into_iter()
                .map(|t| ((t.database.clone(), t.name.clone()), t))
                .collect(),
            finished: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    pub fn tables(&self) -> impl Iterator<Item = &SeedTable> {
        self.tables.values()
    }

    pub fn get(&self, database: &str, name: &str) -> Option<&SeedTable> {
        self.tables.get(&(database.to_string(), name.to_string()))
    }

    /// Whether every range of every table is loaded (the stream may not
    /// have passed the last chunks yet).
    pub fn all_loaded(&self) -> bool {
        self.tables.values().all(|t| t.is_done())
    }

    pub fn take_finished(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.finished)
    }

    /// The key column's place in the table now (0-based), for row images
    /// without column names.
    pub fn set_key_ordinal(&mut self, database: &str, name: &str, ordinal: u32) {
        if let Some(k) = self
            .tables
            .get_mut(&(database.to_string(), name.to_string()))
            .and_then(|t| t.key.as_mut())
        {
            k.ordinal = ordinal;
        }
    }

    /// Adds (or starts again) a table, as `--resync` does.
    pub fn insert(&mut self, table: SeedTable) {
        self.tables
            .insert((table.database.clone(), table.name.clone()), table);
    }

    /// Records a loaded chunk. Returns the table's progress to store.
    pub fn loaded(&mut self, chunk: &SeedChunk, bytes: u64) -> Option<SeedTable> {
        let t = self
            .tables
            .get_mut(&(chunk.database.clone(), chunk.name.clone()))?;
        let r = t.ranges.get_mut(chunk.range as usize)?;
        if chunk.first {
            *r = SeedRange {
                lo: r.lo,
                hi: r.hi,
                ..SeedRange::default()
            };
        }
        r.rows += chunk.rows.len() as u64;
        r.bytes += bytes;
        let whole = t.key.is_none();
        if whole {
            // A whole table counts as loaded only with its last frame.
            if chunk.done {
                r.done = true;
                r.chunks = vec![LoadedChunk {
                    upto: None,
                    position: chunk.position.clone(),
                }];
            }
        } else {
            r.after = chunk.upto.or(r.after);
            r.done = chunk.done;
            r.chunks.push(LoadedChunk {
                upto: if chunk.done { None } else { chunk.upto },
                position: chunk.position.clone(),
            });
        }
        Some(t.clone())
    }

    /// The stream has applied everything up to `applied`: chunks read
    /// before it apply every later change, and tables whose chunks are
    /// all so leave the gate.
    pub fn passed(&mut self, applied: &SourcePosition) {
        let mut gone = Vec::new();
        for (id, t) in self.tables.iter_mut() {
            for r in &mut t.ranges {
                while let Some(c) = r.chunks.first() {
                    if applied.cmp_location(&c.position) == std::cmp::Ordering::Less {
                        break;
                    }
                    match c.upto {
                        Some(k) => r.strict_upto = Some(k),
                        None => r.strict_all = true,
                    }
                    r.chunks.remove(0);
                }
            }
            if t.ranges.iter().all(|r| r.done && r.strict_all) {
                gone.push(id.clone());
            }
        }
        for id in gone {
            self.tables.remove(&id);
            self.finished.push(id);
        }
    }

    /// A statement that renames a table still being seeded: its name and
    /// position, for the error that stops the slave (the copy under the
    /// old name cannot go on under the new one).
    pub fn renamed_by(&self, txn: &Transaction) -> Option<GateError> {
        for change in &txn.changes {
            let Change::Ddl(ddl) = change else { continue };
            let text = ddl.sql_text();
            let words: Vec<String> = text
                .split_whitespace()
                .take(64)
                .map(|w| w.to_ascii_uppercase())
                .collect();
            let renames = words.first().is_some_and(|w| w == "RENAME")
                || (words.first().is_some_and(|w| w == "ALTER")
                    && words.windows(2).any(|w| {
                        w[0] == "RENAME" && !matches!(w[1].as_str(), "COLUMN" | "INDEX" | "KEY")
                    }));
            if !renames {
                continue;
            }
            let crate::source::statement_target::Target::Tables(list) =
                crate::source::statement_target::target(&text)
            else {
                continue;
            };
            for (db, name) in list {
                let Some(db) = db.or_else(|| ddl.database.clone()) else {
                    continue;
                };
                if self.tables.contains_key(&(db.clone(), name.clone())) {
                    return Some(GateError::Renamed {
                        table: format!("{db}.{name}"),
                        position: txn.position.to_string(),
                    });
                }
            }
        }
        None
    }

    /// Removes from `txn` the row changes the seed brings (or brought).
    /// The transaction stays, empty or not, so the checkpoint moves on.
    pub fn filter(&self, txn: &mut Transaction) -> Result<(), GateError> {
        let at = txn.position.clone();
        self.filter_at(txn, &at)
    }

    /// `filter` as if `txn` ended at `at` (a prepared XA transaction's
    /// rows, judged at its `XA COMMIT`).
    pub fn filter_at(&self, txn: &mut Transaction, at: &SourcePosition) -> Result<(), GateError> {
        if self.tables.is_empty() {
            return Ok(());
        }
        let at = at.clone();
        let touches = txn.tables.iter().any(|t| {
            self.tables
                .contains_key(&(t.database.clone(), t.name.clone()))
        });
        if !touches {
            return Ok(());
        }
        let changes = std::mem::take(&mut txn.changes);
        let mut events = txn
            .events
            .as_mut()
            .map(|e| std::mem::take(&mut e.rows).into_iter());
        let mut out = Vec::with_capacity(changes.len());
        let mut out_events = Vec::with_capacity(changes.len());
        for change in changes {
            let raw = events.as_mut().and_then(|e| e.next()).unwrap_or_default();
            let table = match &change {
                Change::Insert { table, .. }
                | Change::Update { table, .. }
                | Change::Delete { table, .. }
                | Change::PartialImage { table, .. } => *table,
                Change::Ddl(_) => {
                    out.push(change);
                    out_events.push(raw);
                    continue;
                }
            };
            let schema = &txn.tables[table as usize];
            let Some(seed) = self
                .tables
                .get(&(schema.database.clone(), schema.name.clone()))
            else {
                out.push(change);
                out_events.push(raw);
                continue;
            };
            if let Some(k) = &seed.key {
                let named = schema.columns.iter().any(|c| !c.name.is_empty());
                if named && !schema.columns.iter().any(|c| c.name == k.name) {
                    return Err(GateError::KeyGone {
                        table: format!("{}.{}", schema.database, schema.name),
                        column: k.name.clone(),
                        position: at.to_string(),
                    });
                }
            }
            let applies = |row: &Row| applies(seed, schema, row, &at);
            // Changes whose rows were cut keep their raw events only for
            // alignment: a seeded table goes by statements (no foreign
            // key, no trigger until the seed ends).
            let mut push = |c: Change, raw: Vec<Vec<u8>>| {
                out.push(c);
                out_events.push(raw);
            };
            match change {
                Change::Insert { table, mut rows } => {
                    rows.retain(|r| applies(r));
                    if !rows.is_empty() {
                        push(Change::Insert { table, rows }, raw);
                    }
                }
                Change::Delete { table, mut rows } => {
                    rows.retain(|r| applies(r));
                    if !rows.is_empty() {
                        push(Change::Delete { table, rows }, raw);
                    }
                }
                Change::Update { table, rows } => {
                    let mut updates = Vec::new();
                    let mut deletes = Vec::new();
                    let mut inserts = Vec::new();
                    for (before, after) in rows {
                        match (applies(&before), applies(&after)) {
                            (true, true) => updates.push((before, after)),
                            (true, false) => deletes.push(before),
                            (false, true) => inserts.push(after),
                            (false, false) => {}
                        }
                    }
                    if deletes.is_empty() && inserts.is_empty() {
                        if !updates.is_empty() {
                            push(
                                Change::Update {
                                    table,
                                    rows: updates,
                                },
                                raw,
                            );
                        }
                    } else {
                        // A key moved between what applies and what does
                        // not: the DELETE or INSERT that applies (with
                        // the whole change as DELETE then INSERT, which
                        // on a table without triggers or foreign keys is
                        // the same).
                        for (b, a) in updates {
                            deletes.push(b);
                            inserts.push(a);
                        }
                        if !deletes.is_empty() {
                            push(
                                Change::Delete {
                                    table,
                                    rows: deletes,
                                },
                                raw,
                            );
                        }
                        if !inserts.is_empty() {
                            push(
                                Change::Insert {
                                    table,
                                    rows: inserts,
                                },
                                Vec::new(),
                            );
                        }
                    }
                }
                c @ Change::PartialImage { .. } => match table_applies(seed, &at) {
                    Some(true) => push(c, raw),
                    Some(false) => {}
                    None => {
                        return Err(GateError::PartialImage {
                            table: format!("{}.{}", schema.database, schema.name),
                            position: at.to_string(),
                        })
                    }
                },
                Change::Ddl(_) => unreachable!("handled above"),
            }
        }
        txn.changes = out;
        if let Some(e) = &mut txn.events {
            e.rows = out_events;
        }
        Ok(())
    }
}

/// Whether a row change at `at` on `row` of a seeded table is applied.
fn applies(seed: &SeedTable, schema: &TableSchema, row: &Row, at: &SourcePosition) -> bool {
    let Some(column) = &seed.key else {
        return table_applies(seed, at).unwrap_or(false);
    };
    let index = match schema.columns.iter().position(|c| c.name == column.name) {
        Some(i) => i,
        // A positional schema (no names): by the column's place.
        None if schema.columns.iter().all(|c| c.name.is_empty()) => column.ordinal as usize,
        None => return false,
    };
    let Some(k) = row.get(index).and_then(|v| key_value(v, column)) else {
        return false;
    };
    let Some(r) = seed.ranges.iter().find(|r| in_range(r, k)) else {
        return false;
    };
    key_applies(r, k, at)
}

fn in_range(r: &SeedRange, k: Key) -> bool {
    r.lo.is_none_or(|lo| k >= lo) && r.hi.is_none_or(|hi| k < hi)
}

fn key_applies(r: &SeedRange, k: Key, at: &SourcePosition) -> bool {
    if r.strict_all || r.strict_upto.is_some_and(|s| k <= s) {
        return true;
    }
    match r.chunks.iter().find(|c| c.upto.is_none_or(|u| k <= u)) {
        Some(c) => at.is_after(&c.position),
        None => false,
    }
}

/// For a change without rows to judge: the table's verdict if every key
/// has the same one (`None`: it depends on the key).
fn table_applies(seed: &SeedTable, at: &SourcePosition) -> Option<bool> {
    let verdicts: Vec<bool> = seed
        .ranges
        .iter()
        .map(|r| {
            if r.strict_all {
                Some(true)
            } else if r.chunks.is_empty() && r.strict_upto.is_none() {
                Some(false)
            } else if r.done && r.strict_upto.is_none() && r.chunks.len() == 1 {
                Some(at.is_after(&r.chunks[0].position))
            } else if r.done && r.chunks.iter().all(|c| at.is_after(&c.position)) {
                Some(true)
            } else {
                None
            }
        })
        .collect::<Option<Vec<bool>>>()?;
    match (verdicts.iter().all(|v| *v), verdicts.iter().all(|v| !*v)) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::change::{ColumnDef, ColumnKind, Value};
    use crate::source::seed_plan::{KeyColumn, SeedRange};

    fn at(offset: u64) -> SourcePosition {
        SourcePosition::new("binlog.000001", offset)
    }

    fn schema(named: bool) -> TableSchema {
        let col = |n: &str| ColumnDef {
            name: if named { n.into() } else { String::new() },
            kind: ColumnKind::Other(0),
            unsigned: false,
            collation: 0,
        };
        TableSchema {
            database: "d".into(),
            name: "t".into(),
            columns: vec![col("v"), col("id")],
            primary_key: if named { vec![1] } else { Vec::new() },
        }
    }

    fn row(id: i64) -> Row {
        vec![Value::Int(id * 10), Value::Int(id)]
    }

    fn ranged() -> SeedTable {
        SeedTable {
            database: "d".into(),
            name: "t".into(),
            key: Some(KeyColumn {
                name: "id".into(),
                ordinal: 1,
                unsigned: false,
                bits: 32,
            }),
            group: 0,
            ranges: vec![SeedRange::default()],
            estimated_rows: 100,
            estimated_bytes: 0,
        }
    }

    fn chunk(upto: Option<i64>, done: bool, position: u64) -> SeedChunk {
        SeedChunk {
            database: "d".into(),
            name: "t".into(),
            range: 0,
            schema: schema(true),
            rows: Vec::new(),
            position: at(position),
            first: false,
            done,
            upto: upto.map(Key::from),
        }
    }

    fn txn(position: u64, changes: Vec<Change>, named: bool) -> Transaction {
        Transaction {
            position: at(position),
            timestamp: 0,
            part: 0,
            more: false,
            tables: vec![schema(named)],
            changes,
            events: None,
            xa: None,
        }
    }

    fn ids(t: &Transaction) -> Vec<String> {
        t.changes
            .iter()
            .map(|c| match c {
                Change::Insert { rows, .. } => {
                    format!("I{:?}", rows.iter().map(|r| &r[1]).collect::<Vec<_>>())
                }
                Change::Delete { rows, .. } => {
                    format!("D{:?}", rows.iter().map(|r| &r[1]).collect::<Vec<_>>())
                }
                Change::Update { rows, .. } => format!("U{}", rows.len()),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_change_applies_only_to_keys_loaded_from_a_chunk_read_before_it() {
        let mut gate = SeedGate::new(vec![ranged()]);
        gate.loaded(&chunk(Some(50), false, 100), 0);
        let insert = |p| {
            txn(
                p,
                vec![Change::Insert {
                    table: 0,
                    rows: vec![row(10), row(60)],
                }],
                true,
            )
        };
        // Before the chunk's read: the chunk holds it.
        let mut t = insert(90);
        gate.filter(&mut t).unwrap();
        assert!(t.changes.is_empty(), "{:?}", ids(&t));
        // After it: key 10 applies; key 60 waits for its own chunk.
        let mut t = insert(110);
        gate.filter(&mut t).unwrap();
        assert_eq!(ids(&t), vec!["I[Int(10)]"]);
        // At exactly the chunk's position: in the chunk.
        let mut t = insert(100);
        gate.filter(&mut t).unwrap();
        assert!(t.changes.is_empty());
    }

    #[test]
    fn a_key_moved_across_the_loaded_edge_keeps_the_half_that_applies() {
        let mut gate = SeedGate::new(vec![ranged()]);
        gate.loaded(&chunk(Some(50), false, 100), 0);
        let update = |from, to| {
            txn(
                200,
                vec![Change::Update {
                    table: 0,
                    rows: vec![(row(from), row(to))],
                }],
                true,
            )
        };
        let mut out = update(10, 60);
        gate.filter(&mut out).unwrap();
        assert_eq!(ids(&out), vec!["D[Int(10)]"]);
        let mut into = update(60, 10);
        gate.filter(&mut into).unwrap();
        assert_eq!(ids(&into), vec!["I[Int(10)]"]);
        let mut inside = update(10, 20);
        gate.filter(&mut inside).unwrap();
        assert_eq!(ids(&inside), vec!["U1"]);
    }

    #[test]
    fn a_table_leaves_the_gate_once_loaded_and_passed() {
        let mut gate = SeedGate::new(vec![ranged()]);
        gate.loaded(&chunk(Some(50), false, 100), 0);
        gate.loaded(&chunk(None, true, 150), 0);
        gate.passed(&at(120));
        assert!(!gate.is_empty());
        // Keys of the passed chunk take everything now, the rest wait.
        let mut t = txn(
            130,
            vec![Change::Delete {
                table: 0,
                rows: vec![row(5), row(70)],
            }],
            true,
        );
        gate.filter(&mut t).unwrap();
        assert_eq!(ids(&t), vec!["D[Int(5)]"]);
        gate.passed(&at(150));
        assert!(gate.is_empty());
        assert_eq!(
            gate.take_finished(),
            vec![("d".to_string(), "t".to_string())]
        );
    }

    #[test]
    fn a_whole_table_applies_after_its_one_read() {
        let mut whole = ranged();
        whole.key = None;
        whole.group = 3;
        let mut gate = SeedGate::new(vec![whole]);
        let mut t = txn(
            50,
            vec![Change::Insert {
                table: 0,
                rows: vec![row(1)],
            }],
            true,
        );
        gate.filter(&mut t).unwrap();
        assert!(t.changes.is_empty(), "not loaded yet");
        // Frames before the last do not load it.
        let mut first = chunk(None, false, 100);
        first.first = true;
        gate.loaded(&first, 0);
        let mut t = txn(
            120,
            vec![Change::Insert {
                table: 0,
                rows: vec![row(1)],
            }],
            true,
        );
        gate.filter(&mut t).unwrap();
        assert!(t.changes.is_empty());
        gate.loaded(&chunk(None, true, 100), 0);
        let mut t = txn(120, vec![Change::PartialImage { table: 0, rows: 1 }], true);
        gate.filter(&mut t).unwrap();
        assert_eq!(t.changes.len(), 1);
    }

    #[test]
    fn positional_images_find_the_key_by_its_place_and_partial_ones_stop() {
        let mut gate = SeedGate::new(vec![ranged()]);
        gate.loaded(&chunk(Some(50), false, 100), 0);
        let mut t = txn(
            110,
            vec![Change::Insert {
                table: 0,
                rows: vec![row(10), row(60)],
            }],
            false,
        );
        gate.filter(&mut t).unwrap();
        assert_eq!(ids(&t), vec!["I[Int(10)]"]);
        let mut partial = txn(110, vec![Change::PartialImage { table: 0, rows: 1 }], true);
        let e = gate.filter(&mut partial).unwrap_err().to_string();
        assert!(e.contains("--resync d.t"), "{e}");
    }

    #[test]
    fn renaming_a_table_being_seeded_is_named_and_column_renames_are_not() {
        let gate = SeedGate::new(vec![ranged()]);
        let ddl = |sql: &str| {
            let mut t = txn(10, Vec::new(), true);
            t.changes.push(Change::Ddl(crate::log::change::Ddl {
                database: Some("d".into()),
                sql: sql.as_bytes().to_vec(),
                ..Default::default()
            }));
            t
        };
        assert!(gate.renamed_by(&ddl("RENAME TABLE t TO t2")).is_some());
        assert!(gate
            .renamed_by(&ddl("ALTER TABLE d.t RENAME TO d.t2"))
            .is_some());
        assert!(gate
            .renamed_by(&ddl("ALTER TABLE t RENAME COLUMN v TO w"))
            .is_none());
        assert!(gate
            .renamed_by(&ddl("RENAME TABLE other TO other2"))
            .is_none());
    }

    #[test]
    fn a_key_column_gone_from_the_table_stops_instead_of_dropping_changes() {
        let mut gate = SeedGate::new(vec![ranged()]);
        gate.loaded(&chunk(Some(50), false, 100), 0);
        let mut t = txn(
            110,
            vec![Change::Insert {
                table: 0,
                rows: vec![row(10)],
            }],
            true,
        );
        t.tables[0].columns[1].name = "renamed".into();
        let e = gate.filter(&mut t).unwrap_err().to_string();
        assert!(e.contains("`id`") && e.contains("--resync d.t"), "{e}");
    }

    #[test]
    fn other_tables_and_ddl_pass_untouched() {
        let gate = SeedGate::new(vec![ranged()]);
        let mut t = txn(
            10,
            vec![Change::Insert {
                table: 0,
                rows: vec![row(1)],
            }],
            true,
        );
        t.tables[0].name = "other".into();
        gate.filter(&mut t).unwrap();
        assert_eq!(t.changes.len(), 1);
    }
}
