//! Values that only a MySQL primary produces (binary JSON already turned
//! into text, partial JSON updates) applied to a real MariaDB replica
//! through the applier: no MySQL server can run here, so the decoding side
//! is unit-tested in `decode.rs` and the writing side here.

mod support;

use rowcast::log::change::*;
use rowcast::replica::apply::Applier;
use rowcast::source::position::{Gtid, SourcePosition};
use rowcast::source::Source;
use support::*;

fn schema() -> TableSchema {
    let col = |name: &str, kind| ColumnDef {
        name: name.into(),
        kind,
        unsigned: false,
        collation: 0,
    };
    TableSchema {
        database: "m".into(),
        name: "docs".into(),
        columns: vec![col("id", ColumnKind::Int), col("doc", ColumnKind::Json)],
        primary_key: vec![0],
    }
}

fn txn(offset: u64, gno: u64, change: Change) -> Transaction {
    Transaction {
        position: SourcePosition {
            epoch: 0,
            file: "binlog.000001".into(),
            offset,
            gtid: Some(Gtid::MySql {
                uuid: [7; 16],
                tag: None,
                gno,
            }),
        },
        timestamp: 1_700_000_000,
        part: 0,
        more: false,
        tables: vec![schema()],
        changes: vec![change],
        events: None,
        xa: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_text_and_partial_json_updates_apply_on_mariadb() {
    let replica = MariaDb::replica();
    replica.sql("CREATE DATABASE m; CREATE TABLE m.docs (id INT PRIMARY KEY, doc JSON)");
    let target = Source::from_url(&replica.url()).unwrap();
    let mut applier = Applier::connect(&target, "mysql-paths").await.unwrap();

    let doc = br#"{"a":1,"b":[1,2],"c":"x"}"#.to_vec();
    let insert = Change::Insert {
        table: 0,
        rows: vec![vec![Value::Int(1), Value::Json(doc.clone())]],
    };
    applier.apply(1, &txn(100, 1, insert)).await.unwrap();

    let edits = vec![
        JsonEdit {
            op: JsonEditOp::Replace,
            path: "$.a".into(),
            value: Some(br#"{"n":true}"#.to_vec()),
        },
        JsonEdit {
            op: JsonEditOp::Insert,
            path: "$.b[0]".into(),
            value: Some(b"0".to_vec()),
        },
        JsonEdit {
            op: JsonEditOp::Insert,
            path: "$.d".into(),
            value: Some(br#""new""#.to_vec()),
        },
        JsonEdit {
            op: JsonEditOp::Remove,
            path: "$.c".into(),
            value: None,
        },
    ];
    let before = vec![Value::Int(1), Value::Json(doc)];
    let after = vec![Value::Int(1), Value::JsonDiff(edits)];
    let update = Change::Update {
        table: 0,
        rows: vec![(before, after)],
    };
    applier.apply(2, &txn(200, 2, update)).await.unwrap();

    let got = replica.sql("SELECT JSON_COMPACT(doc) FROM m.docs WHERE id = 1");
    assert_eq!(got.trim(), r#"{"a":{"n":true},"b":[0,1,2],"d":"new"}"#);
    let cp = replica.sql("SELECT source_offset, source_gtid FROM rowcast.checkpoint WHERE slave_name = 'mysql-paths'");
    assert_eq!(cp.trim(), "200\t07070707-0707-0707-0707-070707070707:2");
}
