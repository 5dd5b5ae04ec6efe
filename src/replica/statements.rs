//! The SQL the applier runs for one table: which columns it writes, how it
//! finds a row, and the parameter lists that go with each statement.
//!
//! A [`TablePlan`] is built from the table as the binlog described it plus
//! what the target says about it: columns the target generates itself
//! (virtual or stored generated columns) are never written and never used
//! to find a row.
//!
//! The apply session's charset is `binary` (`apply.rs`), so string bytes
//! reach each column unconverted. MySQL refuses a JSON value in that
//! charset (error 3144), so a column the target says is MySQL JSON
//! ([`TableFacts::json`](super::table_facts)) binds its value as
//! `CONVERT(? USING utf8mb4)` (JSON is always utf8mb4 text there), in
//! VALUES, SET, WHERE and inside the JSON functions of a partial update.
//! MariaDB's JSON is LONGTEXT and never on that list: its statements keep
//! plain placeholders.

use std::borrow::{Borrow, Cow};
use std::collections::HashSet;

use mysql_async::Value as MyValue;

use crate::log::change::{Row, TableSchema, Value};
use crate::sql;

/// Multi-key DELETEs name keys in steps of this many ([`TablePlan::padded_keys`]).
/// (INSERTs are not cut to steps: the extra statement for the rest costs a
/// round trip, which measured no better than the prepare it spares.)
pub const SIZE_STEP: usize = 16;

pub struct TablePlan {
    pub schema: TableSchema,
    /// Columns written by INSERT and UPDATE.
    written: Vec<usize>,
    /// Columns that identify a row: the primary key, or every written
    /// column of a table without one.
    key: Vec<usize>,
    has_key: bool,
    insert_head: String,
    row_placeholders: String,
    pub update: String,
    pub delete: String,
    /// Per column of `schema`: a MySQL JSON column on the target.
    json: Vec<bool>,
    /// The replica's table may take this table's rows as a net effect
    /// (see `compact.rs`); set by the applier after looking at it.
    pub net_ok: bool,
    /// The replica's table needs the server's own row-event applier
    /// (triggers, foreign keys, no primary key, system versioning; see
    /// `replay.rs`); set by the applier after looking at it.
    pub native: bool,
}

impl TablePlan {
    /// `json`: the target's MySQL JSON columns.
    pub fn new(
        schema: TableSchema,
        generated: &HashSet<String>,
        json: &HashSet<String>,
    ) -> TablePlan {
        let written: Vec<usize> = (0..schema.columns.len())
            .filter(|&i| !generated.contains(&schema.columns[i].name))
            .collect();
        let json: Vec<bool> = schema
            .columns
            .iter()
            .map(|c| json.contains(&c.name))
            .collect();
        let value = |i: &usize| placeholder(json[*i]);
        let has_key = !schema.primary_key.is_empty();
        let key: Vec<usize> = if has_key {
            schema.primary_key.iter().map(|&i| i as usize).collect()
        } else {
            written.clone()
        };
        let name = sql::table(&schema.database, &schema.name);
        let col = |i: &usize| sql::ident(&schema.columns[*i].name);
        let insert_head = format!(
            "INSERT INTO {name} ({}) VALUES ",
            written.iter().map(col).collect::<Vec<_>>().join(",")
        );
        let row_placeholders = format!(
            "({})",
            written.iter().map(value).collect::<Vec<_>>().join(",")
        );
        // A JSON column compares with JSON, not with a string scalar.
        let conds: Vec<String> = key
            .iter()
            .map(|i| match json[*i] {
                true => format!("{} <=> CAST({JSON_TEXT} AS JSON)", col(i)),
                false => format!("{} <=> ?", col(i)),
            })
            .collect();
        // Without a key, identical rows are interchangeable: touch exactly one.
        let where_ = format!(
            " WHERE {}{}",
            conds.join(" AND "),
            if has_key { "" } else { " LIMIT 1" }
        );
        let sets: Vec<String> = written
            .iter()
            .map(|i| format!("{} = {}", col(i), value(i)))
            .collect();
        let update = format!("UPDATE {name} SET {}{where_}", sets.join(", "));
        let delete = format!("DELETE FROM {name}{where_}");
        TablePlan {
            schema,
            written,
            key,
            has_key,
            insert_head,
            row_placeholders,
            update,
            delete,
            json,
            net_ok: false,
            native: false,
        }
    }

    pub fn table_name(&self) -> String {
        sql::table(&self.schema.database, &self.schema.name)
    }

    pub fn insert_sql(&self, rows: usize) -> String {
        let mut s = String::with_capacity(
            self.insert_head.len() + rows * (self.row_placeholders.len() + 1),
        );
        s.push_str(&self.insert_head);
        for i in 0..rows {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&self.row_placeholders);
        }
        s
    }

    /// How many of `rows` (from the front) go into one multi-row INSERT:
    /// bounded by rows, by placeholders (the protocol allows 65,535) and by
    /// bytes, so one statement stays well under `max_allowed_packet`.
    pub fn insert_batch_len<R: Borrow<Row>>(
        &self,
        rows: &[R],
        max_rows: usize,
        max_bytes: usize,
    ) -> usize {
        let by_placeholders = (60_000 / self.written.len().max(1)).max(1);
        let limit = max_rows.min(by_placeholders).min(rows.len());
        let mut bytes = 0;
        for (n, row) in rows[..limit].iter().enumerate() {
            bytes += row_bytes(row.borrow());
            if n > 0 && bytes > max_bytes {
                return n;
            }
        }
        limit
    }

    pub fn insert_params<R: Borrow<Row>>(&self, rows: &[R], out: &mut Vec<MyValue>) {
        for row in rows {
            let row = row.borrow();
            out.extend(self.written.iter().map(|&i| sql::param(&row[i])));
        }
    }

    /// The UPDATE for one row and its parameters. A MySQL partial JSON
    /// update makes the statement row-specific (`col = JSON_...(col, ...)`);
    /// every other row uses the prepared [`TablePlan::update`].
    pub fn update_for(&self, before: &Row, after: &Row) -> (Cow<'_, str>, Vec<MyValue>) {
        let mut p = Vec::with_capacity(self.written.len() + self.key.len());
        if !after.iter().any(|v| matches!(v, Value::JsonDiff(_))) {
            p.extend(self.written.iter().map(|&i| sql::param(&after[i])));
            p.extend(self.key_params(before));
            return (Cow::Borrowed(&self.update), p);
        }
        let mut sets = Vec::with_capacity(self.written.len());
        for &i in &self.written {
            let name = &self.schema.columns[i].name;
            let text = placeholder(self.json[i]);
            match &after[i] {
                Value::JsonDiff(edits) => sets.push(format!(
                    "{} = {}",
                    sql::ident(name),
                    sql::json_edit_sql(name, edits, text, &mut p)
                )),
                v => {
                    sets.push(format!("{} = {text}", sql::ident(name)));
                    p.push(sql::param(v));
                }
            }
        }
        p.extend(self.key_params(before));
        let where_at = self.update.find(" WHERE ").unwrap_or(self.update.len());
        let sql = format!(
            "UPDATE {} SET {}{}",
            self.table_name(),
            sets.join(", "),
            &self.update[where_at..]
        );
        (Cow::Owned(sql), p)
    }

    /// `DELETE ... WHERE key IN (...)` for `n` keys of a table with a
    /// primary key.
    pub fn delete_keys_sql(&self, n: usize) -> String {
        let col = |i: &usize| sql::ident(&self.schema.columns[*i].name);
        let cols: Vec<String> = self.key.iter().map(col).collect();
        let values: Vec<&str> = self
            .key
            .iter()
            .map(|&i| placeholder(self.json[i]))
            .collect();
        let (lhs, one) = if cols.len() == 1 {
            (cols[0].clone(), values[0].to_string())
        } else {
            (
                format!("({})", cols.join(",")),
                format!("({})", values.join(",")),
            )
        };
        format!(
            "DELETE FROM {} WHERE {lhs} IN ({})",
            self.table_name(),
            vec![one; n].join(",")
        )
    }

    /// How many keys the multi-key DELETE for `keys` of them names: padded
    /// (by naming the last key again, which deletes nothing more) to a
    /// multiple of [`SIZE_STEP`], so its text repeats from batch to batch
    /// and stays prepared.
    pub fn padded_keys(&self, keys: usize) -> usize {
        (keys.div_ceil(SIZE_STEP) * SIZE_STEP)
            .min(self.keys_per_delete())
            .max(keys)
    }

    /// Keys per multi-key DELETE, within the protocol's 65,535 placeholders.
    pub fn keys_per_delete(&self) -> usize {
        (60_000 / self.key.len().max(1)).clamp(1, 1000)
    }

    pub fn key_params(&self, row: &Row) -> Vec<MyValue> {
        self.key.iter().map(|&i| sql::param(&row[i])).collect()
    }

    /// `key (id)=(5)` or `row (a,b)=(1,'x')`, for error messages.
    pub fn describe_key(&self, row: &Row) -> String {
        let names: Vec<&str> = self
            .key
            .iter()
            .map(|&i| self.schema.columns[i].name.as_str())
            .collect();
        let values: Vec<String> = self
            .key
            .iter()
            .map(|&i| match &row[i] {
                Value::Bytes(b) if b.len() > 64 => {
                    format!("'{}…'", String::from_utf8_lossy(&b[..64]))
                }
                Value::Bytes(b) => format!("'{}'", String::from_utf8_lossy(b)),
                Value::Null => "NULL".into(),
                Value::Int(v) => v.to_string(),
                Value::UInt(v) => v.to_string(),
                Value::Decimal(d) => d.clone(),
                v => format!("{v:?}"),
            })
            .collect();
        let label = if self.has_key { "key" } else { "row" };
        format!("{label} ({})=({})", names.join(","), values.join(","))
    }
}

/// A MySQL JSON column's value as utf8mb4 text (see the module doc).
const JSON_TEXT: &str = "CONVERT(? USING utf8mb4)";

fn placeholder(json: bool) -> &'static str {
    if json {
        JSON_TEXT
    } else {
        "?"
    }
}

/// Rough encoded size of a row, for batching.
pub fn row_bytes(row: &Row) -> usize {
    row.iter()
        .map(|v| match v {
            Value::Bytes(b) | Value::Json(b) => b.len() + 9,
            Value::Decimal(s) => s.len() + 9,
            _ => 12,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(pk: Vec<u32>) -> TableSchema {
        TableSchema::of_ints("t", &["id", "v", "g"], pk)
    }

    #[test]
    fn statements_use_the_key_or_the_whole_row_and_skip_generated_columns() {
        let generated: HashSet<String> = ["g".to_string()].into();
        let p = TablePlan::new(schema(vec![0]), &generated, &HashSet::new());
        assert_eq!(
            p.insert_sql(2),
            "INSERT INTO `d`.`t` (`id`,`v`) VALUES (?,?),(?,?)"
        );
        assert_eq!(
            p.update,
            "UPDATE `d`.`t` SET `id` = ?, `v` = ? WHERE `id` <=> ?"
        );
        let p = TablePlan::new(schema(vec![]), &generated, &HashSet::new());
        assert_eq!(
            p.delete,
            "DELETE FROM `d`.`t` WHERE `id` <=> ? AND `v` <=> ? LIMIT 1"
        );
        let row = vec![Value::Int(1), Value::Null, Value::Int(3)];
        assert_eq!(p.describe_key(&row), "row (id,v)=(1,NULL)");
        let (sql, params) = p.update_for(&row, &row);
        assert_eq!(sql, p.update);
        assert_eq!(params.len(), 4);
        let edit = vec![crate::log::change::JsonEdit {
            op: crate::log::change::JsonEditOp::Remove,
            path: "$.x".into(),
            value: None,
        }];
        let after = vec![Value::Int(1), Value::JsonDiff(edit), Value::Int(3)];
        let (sql, params) = p.update_for(&row, &after);
        assert_eq!(
            sql,
            "UPDATE `d`.`t` SET `id` = ?, `v` = JSON_REMOVE(`v`, ?) WHERE `id` <=> ? AND `v` <=> ? LIMIT 1"
        );
        assert_eq!(params.len(), 4);
    }

    /// `d.t(id, j JSON, v)`: on MySQL `j` is JSON and its values go as
    /// utf8mb4 text; MariaDB's JSON is LONGTEXT and keeps plain
    /// placeholders.
    #[test]
    fn a_mysql_json_column_binds_its_values_as_utf8mb4_text() {
        let schema = TableSchema::of_ints("t", &["id", "j", "v"], vec![0]);
        let mysql: HashSet<String> = ["j".to_string()].into();
        let mariadb = HashSet::new();
        let my = TablePlan::new(schema.clone(), &HashSet::new(), &mysql);
        let maria = TablePlan::new(schema.clone(), &HashSet::new(), &mariadb);
        assert_eq!(
            my.insert_sql(2),
            "INSERT INTO `d`.`t` (`id`,`j`,`v`) VALUES \
             (?,CONVERT(? USING utf8mb4),?),(?,CONVERT(? USING utf8mb4),?)"
        );
        assert_eq!(
            maria.insert_sql(1),
            "INSERT INTO `d`.`t` (`id`,`j`,`v`) VALUES (?,?,?)"
        );
        assert_eq!(
            my.update,
            "UPDATE `d`.`t` SET `id` = ?, `j` = CONVERT(? USING utf8mb4), `v` = ? WHERE `id` <=> ?"
        );
        assert_eq!(
            maria.update,
            "UPDATE `d`.`t` SET `id` = ?, `j` = ?, `v` = ? WHERE `id` <=> ?"
        );
        assert_eq!(my.delete_keys_sql(2), maria.delete_keys_sql(2));
        // A partial JSON update: every string argument converted.
        let row = vec![Value::Int(1), Value::Json(b"{}".to_vec()), Value::Int(3)];
        let edits = vec![
            crate::log::change::JsonEdit {
                op: crate::log::change::JsonEditOp::Replace,
                path: "$.a".into(),
                value: Some(b"1".to_vec()),
            },
            crate::log::change::JsonEdit {
                op: crate::log::change::JsonEditOp::Remove,
                path: "$.b".into(),
                value: None,
            },
        ];
        let after = vec![Value::Int(1), Value::JsonDiff(edits), Value::Int(3)];
        let (sql, params) = my.update_for(&row, &after);
        assert_eq!(
            sql,
            "UPDATE `d`.`t` SET `id` = ?, `j` = JSON_REMOVE(JSON_REPLACE(`j`, \
             CONVERT(? USING utf8mb4), JSON_EXTRACT(CONVERT(? USING utf8mb4), '$')), \
             CONVERT(? USING utf8mb4)), `v` = ? WHERE `id` <=> ?"
        );
        assert_eq!(params.len(), 6);
        let (sql, _) = maria.update_for(&row, &after);
        assert_eq!(
            sql,
            "UPDATE `d`.`t` SET `id` = ?, `j` = JSON_REMOVE(JSON_REPLACE(`j`, ?, \
             JSON_EXTRACT(?, '$')), ?), `v` = ? WHERE `id` <=> ?"
        );
        // Without a key (only ever through statements when the replica's
        // table has none either), a JSON column is compared as JSON.
        let keyless = TablePlan::new(
            TableSchema::of_ints("t", &["j"], vec![]),
            &HashSet::new(),
            &mysql,
        );
        assert_eq!(
            keyless.delete,
            "DELETE FROM `d`.`t` WHERE `j` <=> CAST(CONVERT(? USING utf8mb4) AS JSON) LIMIT 1"
        );
    }

    #[test]
    fn insert_batches_are_bounded_by_bytes() {
        let p = TablePlan::new(schema(vec![0]), &HashSet::new(), &HashSet::new());
        let big = vec![Value::Int(1), Value::Bytes(vec![0; 1000]), Value::Null];
        let rows = vec![big; 10];
        assert_eq!(p.insert_batch_len(&rows, 200, 2500), 2);
        assert_eq!(p.insert_batch_len(&rows, 3, 1 << 20), 3);
        assert_eq!(
            p.insert_batch_len(&rows[..1], 200, 10),
            1,
            "one row always fits"
        );
    }

    #[test]
    fn multi_key_deletes_come_in_few_sizes() {
        // Their texts then stay prepared from batch to batch. The last key
        // is named again up to the next step, never past the most one
        // statement may name.
        let p = TablePlan::new(schema(vec![0]), &HashSet::new(), &HashSet::new());
        assert_eq!(p.padded_keys(1), 16);
        assert_eq!(p.padded_keys(16), 16);
        assert_eq!(p.padded_keys(17), 32);
        assert_eq!(p.keys_per_delete(), 1000);
        assert_eq!(p.padded_keys(995), 1000);
        assert_eq!(p.padded_keys(1000), 1000);
    }
}
