//! Writes the seed corpus of the fuzz targets into `testdata/fuzz/<target>/`:
//! small valid encodings of every wire message, change and value kind,
//! and the recorded MariaDB binlog. Files it writes are named `seed-*` and
//! are overwritten on each run; other files (inputs merged by
//! `scripts/fuzz --keep`) are left alone.
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --bin seed-corpus

use std::path::{Path, PathBuf};

use mysql_common::binlog::consts::TransactionPayloadCompressionType;
use mysql_common::binlog::events::{GtidEvent, QueryEvent, TransactionPayloadEvent};
use mysql_common::packets::Tag;
use mysql_common::proto::MySerialize;
use rowcast::log::change::*;
use rowcast::log::codec;
use rowcast::net::frame;
use rowcast::net::wire::{self, *};
use rowcast::source::position::{Gtid, GtidTag, SourcePosition};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = root.join("testdata/fuzz");
    let mut total = 0;
    for (target, files) in [
        ("frame", frame_seeds()),
        ("change", change_seeds()),
        ("binlog", binlog_seeds(&root)),
    ] {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &files {
            // Every seed must pass its own target's check, and decode.
            let decoded = rowcast_fuzz::check(target, bytes).unwrap();
            assert!(decoded > 0, "seed {target}/{name} decodes nothing");
            println!("  {name}: {} bytes, {decoded} decoded", bytes.len());
            let path: PathBuf = dir.join(format!("seed-{name}"));
            std::fs::write(&path, bytes).unwrap();
            total += bytes.len();
        }
        println!("{}: {} files", dir.display(), files.len());
    }
    println!("{total} bytes in all");
}

fn position(gtid: Option<Gtid>) -> SourcePosition {
    SourcePosition {
        epoch: 1,
        file: "binlog.000042".into(),
        offset: 123_456,
        gtid,
    }
}

fn mariadb_gtid() -> Option<Gtid> {
    Some(Gtid::MariaDb {
        domain: 0,
        server: 7,
        seq: 99,
    })
}

fn mysql_gtid() -> Option<Gtid> {
    Some(Gtid::MySql {
        uuid: *b"\x3e\x11\xfa\x47\x71\xca\x11\xe1\x9e\x33\xc8\x0a\xa9\x42\x95\x62",
        tag: None,
        gno: 23,
    })
}

/// A MySQL 8.4+ tagged GTID, `uuid:mytag:3`.
fn mysql_tagged_gtid() -> Option<Gtid> {
    Some(Gtid::MySql {
        uuid: *b"\x55\x77\x89\x04\x02\x99\x11\xf1\xb1\xb8\x4e\xf0\xc4\x95\x6f\xeb",
        tag: Some(GtidTag::new("mytag").unwrap()),
        gno: 3,
    })
}

fn column(name: &str, kind: ColumnKind, unsigned: bool, collation: u16) -> ColumnDef {
    ColumnDef {
        name: name.into(),
        kind,
        unsigned,
        collation,
    }
}

/// A table with a column of every kind, and a row of matching values.
fn wide_table() -> (TableSchema, Row) {
    let cols = [
        (ColumnKind::TinyInt, Value::Int(-128)),
        (ColumnKind::SmallInt, Value::UInt(65_535)),
        (ColumnKind::MediumInt, Value::Int(-8_388_608)),
        (ColumnKind::Int, Value::Int(i64::from(i32::MIN))),
        (ColumnKind::BigInt, Value::UInt(u64::MAX)),
        (ColumnKind::Float, Value::Float(1.5)),
        (ColumnKind::Double, Value::Double(-0.25)),
        (ColumnKind::Decimal, Value::Decimal("-12.3400".into())),
        (ColumnKind::Year, Value::Year(2024)),
        (
            ColumnKind::Date,
            Value::Date {
                year: 2024,
                month: 2,
                day: 29,
            },
        ),
        (
            ColumnKind::Time,
            Value::Time {
                negative: true,
                hours: 838,
                minutes: 59,
                seconds: 59,
                micros: 1,
            },
        ),
        (
            ColumnKind::DateTime,
            Value::DateTime {
                year: 9999,
                month: 12,
                day: 31,
                hour: 23,
                minute: 59,
                second: 59,
                micros: 999_999,
            },
        ),
        (
            ColumnKind::Timestamp,
            Value::Timestamp {
                seconds: 981_173_106,
                micros: 7,
            },
        ),
        (ColumnKind::Char, Value::Bytes(b"abc".to_vec())),
        (ColumnKind::VarChar, Value::Bytes("ü😀".as_bytes().to_vec())),
        (ColumnKind::Blob, Value::Bytes(vec![0, 0xff])),
        (ColumnKind::Enum, Value::Enum(2)),
        (ColumnKind::Set, Value::Set(0b101)),
        (ColumnKind::Bit, Value::Bit(0x8000_0000_0000_0001)),
        (ColumnKind::Json, Value::Json(br#"{"k":[1,"x"]}"#.to_vec())),
        (ColumnKind::Geometry, Value::Bytes(vec![0; 25])),
        (ColumnKind::Other(245), Value::Null),
    ];
    let columns = cols
        .iter()
        .enumerate()
        .map(|(i, (kind, v))| {
            let collation = match v {
                Value::Bytes(_) => 45,
                _ => 0,
            };
            column(
                &format!("c{i}"),
                *kind,
                matches!(v, Value::UInt(_)),
                collation,
            )
        })
        .collect();
    let table = TableSchema {
        database: "shop".into(),
        name: "wide".into(),
        columns,
        primary_key: vec![4],
    };
    (table, cols.into_iter().map(|(_, v)| v).collect())
}

fn small_table() -> TableSchema {
    TableSchema {
        database: "d".into(),
        name: "t".into(),
        columns: vec![
            column("id", ColumnKind::BigInt, true, 0),
            column("doc", ColumnKind::Json, false, 63),
        ],
        primary_key: vec![0],
    }
}

fn transactions() -> Vec<(&'static str, Transaction)> {
    let (wide, row) = wide_table();
    let txn = |gtid, tables, changes| Transaction {
        position: position(gtid),
        timestamp: 1_700_000_000,
        part: 0,
        more: false,
        tables,
        changes,
        events: None,
        xa: None,
    };
    vec![
        ("empty", txn(None, vec![], vec![])),
        (
            "insert-all-kinds",
            txn(
                mariadb_gtid(),
                vec![wide.clone()],
                vec![Change::Insert {
                    table: 0,
                    rows: vec![row.clone()],
                }],
            ),
        ),
        (
            "update",
            txn(
                mysql_gtid(),
                vec![small_table()],
                vec![Change::Update {
                    table: 0,
                    rows: vec![
                        (
                            vec![Value::UInt(1), Value::Json(b"{}".to_vec())],
                            vec![Value::UInt(1), Value::Json(b"[1]".to_vec())],
                        ),
                        (
                            vec![Value::UInt(2), Value::Null],
                            vec![Value::UInt(3), Value::Null],
                        ),
                    ],
                }],
            ),
        ),
        (
            "partial-json",
            txn(
                mysql_tagged_gtid(),
                vec![small_table()],
                vec![Change::Update {
                    table: 0,
                    rows: vec![(
                        vec![Value::UInt(1), Value::Json(br#"{"a":1,"b":2}"#.to_vec())],
                        vec![
                            Value::UInt(1),
                            Value::JsonDiff(vec![
                                JsonEdit {
                                    op: JsonEditOp::Replace,
                                    path: "$.a".into(),
                                    value: Some(b"true".to_vec()),
                                },
                                JsonEdit {
                                    op: JsonEditOp::Insert,
                                    path: "$.c[2]".into(),
                                    value: Some(b"\"x\"".to_vec()),
                                },
                                JsonEdit {
                                    op: JsonEditOp::Remove,
                                    path: "$.b".into(),
                                    value: None,
                                },
                            ]),
                        ],
                    )],
                }],
            ),
        ),
        (
            "delete",
            txn(
                mariadb_gtid(),
                vec![small_table()],
                vec![Change::Delete {
                    table: 0,
                    rows: vec![vec![Value::UInt(9), Value::Null]; 3],
                }],
            ),
        ),
        (
            "ddl",
            txn(
                mariadb_gtid(),
                vec![],
                vec![Change::Ddl(Ddl {
                    database: Some("shop".into()),
                    sql: b"ALTER TABLE wide ADD COLUMN z INT".to_vec(),
                    sql_mode: Some(1_436_549_152),
                    charset: Some((33, 33, 8)),
                    ..Default::default()
                })],
            ),
        ),
        (
            "ddl-bare",
            txn(
                None,
                vec![],
                vec![Change::Ddl(Ddl {
                    database: None,
                    sql: vec![0xe9, b' ', b';'],
                    sql_mode: None,
                    charset: None,
                    ..Default::default()
                })],
            ),
        ),
        (
            "mixed",
            txn(
                mariadb_gtid(),
                vec![small_table(), wide],
                vec![
                    Change::Insert {
                        table: 1,
                        rows: vec![row],
                    },
                    Change::Delete {
                        table: 0,
                        rows: vec![vec![Value::UInt(1), Value::Null]],
                    },
                    Change::Insert {
                        table: 0,
                        rows: vec![vec![Value::UInt(2), Value::Json(b"null".to_vec())]],
                    },
                ],
            ),
        ),
        ("xa-prepare", {
            let mut t = txn(
                mariadb_gtid(),
                vec![small_table()],
                vec![Change::Insert {
                    table: 0,
                    rows: vec![vec![Value::UInt(3), Value::Null]],
                }],
            );
            t.xa = Some(XaStep::Prepare(Xid {
                format_id: 1,
                gtrid: b"g1".to_vec(),
                bqual: Vec::new(),
            }));
            t
        }),
        ("partial-image", {
            // A session's binlog_row_image=MINIMAL: no rows, only the
            // primary's own events.
            let mut t = txn(
                mariadb_gtid(),
                vec![small_table()],
                vec![Change::PartialImage { table: 0, rows: 2 }],
            );
            t.events = Some(RowEvents {
                format: vec![0; 19],
                crc32: true,
                table_maps: vec![vec![1; 19]],
                rows: vec![vec![vec![2; 27], vec![3; 27]]],
            });
            t
        }),
        ("xa-commit", {
            let mut t = txn(mariadb_gtid(), vec![], vec![]);
            t.xa = Some(XaStep::Commit(Xid {
                format_id: 7,
                gtrid: b"g1".to_vec(),
                bqual: b"b".to_vec(),
            }));
            t
        }),
    ]
}

fn change_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, (name, txn)) in transactions().into_iter().enumerate() {
        out.push((format!("txn-{name}"), codec::encode(&txn).unwrap()));
        let seq = [1, 300, u64::MAX][i % 3];
        out.push((
            format!("record-{name}"),
            codec::encode(&(seq, txn)).unwrap(),
        ));
    }
    out
}

/// A seed plan entry with progress in two ranges.
fn seed_table() -> rowcast::source::seed_plan::SeedTable {
    use rowcast::source::seed_plan::{KeyColumn, LoadedChunk, SeedRange, SeedTable};
    SeedTable {
        database: "shop".into(),
        name: "wide".into(),
        key: Some(KeyColumn {
            name: "c4".into(),
            ordinal: 3,
            unsigned: false,
            bits: 64,
        }),
        group: 0,
        ranges: vec![
            SeedRange {
                lo: None,
                hi: Some(0),
                after: Some(-5),
                done: false,
                chunks: vec![LoadedChunk {
                    upto: Some(-5),
                    position: position(mariadb_gtid()),
                }],
                rows: 5,
                bytes: 500,
                strict_upto: None,
                strict_all: false,
            },
            SeedRange {
                lo: Some(0),
                ..SeedRange::default()
            },
        ],
        estimated_rows: 10,
        estimated_bytes: 1000,
    }
}

fn framed(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        out.extend_from_slice(&frame::header(m.len()));
        out.extend_from_slice(m);
    }
    out
}

/// Frame seeds: the mode byte (bit 0: 0 = master reading, 1 = slave
/// reading; the rest: bytes per read), then the stream.
fn frame_seeds() -> Vec<(String, Vec<u8>)> {
    let enc = |m: &dyn erased::Enc| m.enc();
    let after = position(mariadb_gtid());
    let slave: Vec<(&str, SlaveMessage)> = vec![
        (
            "hello",
            SlaveMessage::Hello {
                protocol: wire::PROTOCOL_VERSION,
                name: "replica-1".into(),
                auth: Some(vec![0xab; 32]),
                after: Some(after.clone()),
            },
        ),
        (
            "hello-new",
            SlaveMessage::Hello {
                protocol: wire::PROTOCOL_VERSION,
                name: "r".into(),
                auth: None,
                after: None,
            },
        ),
        (
            "ack",
            SlaveMessage::Ack {
                seq: 77,
                position: after.clone(),
                source_time: 1_700_000_001,
                keep_from: 78,
            },
        ),
        (
            "ack-xa-held",
            SlaveMessage::Ack {
                seq: 90,
                position: after.clone(),
                source_time: 0,
                keep_from: 61,
            },
        ),
        (
            "progress",
            SlaveMessage::SnapshotProgress {
                rows: 10,
                estimated: 1000,
            },
        ),
        (
            "failed",
            SlaveMessage::Failed {
                message: "table `d`.`t` is missing".into(),
            },
        ),
        ("status", SlaveMessage::StatusRequest { auth: None }),
        (
            "settings",
            SlaveMessage::Settings(SlaveSettings {
                delay_seconds: 60,
                rewrite_db: vec![("a".into(), "b".into())],
                skipped: vec![Skipped {
                    position: "mysql-bin.000002:1234".into(),
                    at: 1_700_000_003,
                    reason: "table `a`.`t` is missing".into(),
                }],
            }),
        ),
        (
            "seed",
            SlaveMessage::Seed {
                tables: vec![seed_table()],
                resync: vec![("shop".into(), "orders".into())],
            },
        ),
    ];
    let (wide, row) = wide_table();
    let object = |name: &str, sql: &str| SnapshotObject {
        database: "shop".into(),
        name: name.into(),
        create_sql: sql.as_bytes().to_vec(),
        charset: None,
    };
    let mut master: Vec<(String, MasterMessage)> = vec![
        (
            "challenge".into(),
            MasterMessage::Challenge {
                nonce: vec![7; 32],
                token_required: true,
            },
        ),
        ("welcome".into(), MasterMessage::Welcome { last_seq: 1234 }),
        (
            "heartbeat".into(),
            MasterMessage::Heartbeat {
                last_seq: 1234,
                position: Some(after.clone()),
                now_ms: 1_700_000_000_123,
            },
        ),
        (
            "error".into(),
            MasterMessage::Error {
                kind: ErrorKind::PositionPurged,
                message: "purged".into(),
            },
        ),
        (
            "snapshot-begin".into(),
            MasterMessage::SnapshotBegin {
                position: after.clone(),
                databases: vec![object("shop", "CREATE DATABASE shop")],
                tables: vec![object("wide", "CREATE TABLE wide (c4 BIGINT PRIMARY KEY)")],
                views: vec![object("v", "CREATE VIEW v AS SELECT 1")],
                estimated_rows: 100,
                estimated_bytes: 1 << 20,
                objects: Default::default(),
            },
        ),
        (
            "snapshot-rows".into(),
            MasterMessage::SnapshotRows {
                table: wide,
                rows: vec![row.clone(), row],
            },
        ),
        (
            "snapshot-end".into(),
            MasterMessage::SnapshotEnd {
                position: after.clone(),
                rows: 2,
            },
        ),
        (
            "status".into(),
            MasterMessage::Status(MasterStatus {
                primary: "db1:3306".into(),
                primary_position: Some(after.clone()),
                log_position: Some(after.clone()),
                log_time: 1_700_000_000,
                log_first_seq: 1,
                log_last_seq: 1234,
                log_segments: 2,
                log_bytes: 70 << 20,
                log_dir: "/var/lib/rowcast".into(),
                slaves: vec![SlaveStatus {
                    name: "replica-1".into(),
                    addr: "10.0.0.2:51000".into(),
                    state: "streaming".into(),
                    applied_seq: 1200,
                    applied_position: Some(after.clone()),
                    lag_transactions: 34,
                    lag_seconds: 1,
                    snapshot_rows: 10,
                    snapshot_estimated_rows: 100,
                    snapshot_bytes: 1 << 10,
                    snapshot_estimated_bytes: 1 << 14,
                    snapshot_eta_seconds: Some(30),
                    last_error: None,
                    settings: SlaveSettings {
                        delay_seconds: 3600,
                        rewrite_db: vec![("shop".into(), "shop_copy".into())],
                        skipped: vec![Skipped {
                            position: "0-1-42".into(),
                            at: 1_700_000_002,
                            reason: "duplicate key".into(),
                        }],
                    },
                }],
            }),
        ),
        (
            "seed-begin".into(),
            MasterMessage::SeedBegin {
                position: after.clone(),
                databases: vec![object("shop", "CREATE DATABASE shop")],
                tables: vec![object("wide", "CREATE TABLE wide (c4 BIGINT PRIMARY KEY)")],
                views: Vec::new(),
                objects: Default::default(),
                plan: vec![seed_table()],
            },
        ),
        (
            "seed-chunk".into(),
            MasterMessage::SeedChunk(rowcast::source::seed_plan::SeedChunk {
                database: "shop".into(),
                name: "wide".into(),
                range: 1,
                schema: wide_table().0,
                rows: vec![wide_table().1],
                position: after.clone(),
                first: false,
                done: false,
                upto: Some(-5),
            }),
        ),
        (
            "seed-table-begin".into(),
            MasterMessage::SeedTableBegin {
                database: object("shop", "CREATE DATABASE shop"),
                table: object("wide", "CREATE TABLE wide (c4 BIGINT PRIMARY KEY)"),
                plan: seed_table(),
            },
        ),
    ];
    for (i, (name, txn)) in transactions().into_iter().enumerate() {
        master.push((
            format!("txn-{name}"),
            MasterMessage::Transaction(100 + i as u64, txn),
        ));
    }

    let mut out = Vec::new();
    // The master reads: each message alone, then a whole session.
    for (name, m) in &slave {
        out.push((
            format!("master-{name}"),
            [vec![0x7e], framed(&[enc(m)])].concat(),
        ));
    }
    let session: Vec<Vec<u8>> = slave.iter().map(|(_, m)| enc(m)).collect();
    for read in [1u8, 5, 128] {
        out.push((
            format!("master-session-read{read}"),
            [vec![(read - 1) << 1], framed(&session)].concat(),
        ));
    }
    // A slave reads: the greeting, then each message alone, then a session.
    for (name, m) in &master {
        out.push((
            format!("slave-{name}"),
            [vec![0xff], wire::greeting().to_vec(), framed(&[enc(m)])].concat(),
        ));
    }
    let session: Vec<Vec<u8>> = master.iter().map(|(_, m)| enc(m)).collect();
    for read in [1u8, 9, 128] {
        out.push((
            format!("slave-session-read{read}"),
            [
                vec![((read - 1) << 1) | 1],
                wire::greeting().to_vec(),
                framed(&session),
            ]
            .concat(),
        ));
    }
    out
}

/// Encoding behind one signature for both message enums.
mod erased {
    pub trait Enc {
        fn enc(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Enc for T {
        fn enc(&self) -> Vec<u8> {
            rowcast::log::codec::encode(self).unwrap()
        }
    }
}

/// An event as the server sends it: a v4 header, then the body, no checksum.
fn event(type_code: u8, log_pos: u32, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&1_700_000_000u32.to_le_bytes());
    bytes.push(type_code);
    bytes.extend_from_slice(&7u32.to_le_bytes());
    bytes.extend_from_slice(&((19 + body.len()) as u32).to_le_bytes());
    bytes.extend_from_slice(&log_pos.to_le_bytes());
    bytes.extend_from_slice(&0u16.to_le_bytes());
    bytes.extend_from_slice(body);
    bytes
}

fn serialize(e: &impl MySerialize) -> Vec<u8> {
    let mut b = Vec::new();
    e.serialize(&mut b);
    b
}

fn query(sql: &str) -> Vec<u8> {
    serialize(&QueryEvent::new(Vec::new(), b"db".to_vec()).with_query(sql.as_bytes().to_vec()))
}

fn binlog_seeds(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    // The recorded MariaDB 10.11 binlog (checksummed events, every column
    // type), whole and cut after each event that ends a transaction.
    let recorded = std::fs::read(root.join("testdata/mariadb-10.11-rows.binlog")).unwrap();
    out.push(("mariadb-recorded".to_string(), recorded.clone()));
    // From rust_mysql_common's test data: MySQL 9.6 with a tagged GTID
    // (GTID_TAGGED_LOG_EVENT, tagged PREVIOUS_GTIDS), and MySQL 9.0 rows
    // of binary JSON holding opaque scalars.
    for (name, file) in [
        (
            "mysql-9.6-tagged-recorded",
            "binlog_transaction_with_GTID_TAG.000001",
        ),
        ("mysql-9.0-json-opaque-recorded", "json-opaque.binlog"),
    ] {
        let path = root
            .join("testdata/mysql-binlogs/rust_mysql_common")
            .join(file);
        out.push((name.to_string(), std::fs::read(path).unwrap()));
    }
    let mut at = 4;
    let mut cuts = 0;
    while at + 19 <= recorded.len() {
        let size = u32::from_le_bytes(recorded[at + 9..at + 13].try_into().unwrap()) as usize;
        let type_code = recorded[at + 4];
        at += size;
        // XID (16) and QUERY (2) events can end a transaction.
        if matches!(type_code, 2 | 16) && at < recorded.len() {
            cuts += 1;
            out.push((
                format!("mariadb-recorded-cut{cuts}"),
                recorded[..at].to_vec(),
            ));
        }
    }

    // Hand-built MySQL and MariaDB events, no format description event
    // (so no checksums).
    let sid = *b"\x3e\x11\xfa\x47\x71\xca\x11\xe1\x9e\x33\xc8\x0a\xa9\x42\x95\x62";
    let gtid = |gno| event(33, 0, &serialize(&GtidEvent::new(sid, gno)));
    let tagged_gtid = |gno| {
        let tag = Tag::new("mytag").unwrap();
        event(42, 0, &serialize(&GtidEvent::new_tagged(sid, tag, gno)))
    };
    let mariadb_gtid = |seq: u64, flags: u8| {
        let mut body = seq.to_le_bytes().to_vec();
        body.extend_from_slice(&0u32.to_le_bytes());
        body.push(flags);
        body.extend_from_slice(&[0; 6]);
        event(162, 0, &body)
    };
    let mut rotate = 4u64.to_le_bytes().to_vec();
    rotate.extend_from_slice(b"binlog.000002");
    // A MySQL 8 TRANSACTION_PAYLOAD event (uncompressed), whose inner
    // events carry log_pos 0.
    let inner = [
        event(2, 0, &query("BEGIN")),
        event(16, 0, &1u64.to_le_bytes()),
    ]
    .concat();
    let payload = serialize(&TransactionPayloadEvent::new(
        inner.len() as u64,
        TransactionPayloadCompressionType::NONE,
        inner.len() as u64,
        &inner[..],
    ));
    let streams: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "mysql-ddl-and-xid",
            vec![
                gtid(23),
                event(2, 500, &query("CREATE TABLE t (a INT)")),
                gtid(24),
                event(2, 600, &query("BEGIN")),
                event(16, 700, &7u64.to_le_bytes()),
            ],
        ),
        (
            "mariadb-gtid-rollback-commit",
            vec![
                mariadb_gtid(5, 0),
                event(2, 100, &query("BEGIN")),
                event(2, 200, &query("ROLLBACK")),
                mariadb_gtid(6, 1),
                event(
                    2,
                    300,
                    &query("DROP TABLE IF EXISTS `d`.`t` /* generated by server */"),
                ),
                event(2, 400, &query("COMMIT")),
            ],
        ),
        (
            "mysql-tagged-gtid",
            vec![
                tagged_gtid(3),
                event(2, 800, &query("BEGIN")),
                event(16, 900, &8u64.to_le_bytes()),
            ],
        ),
        (
            "rotate-and-payload",
            vec![event(4, 0, &rotate), event(40, 4242, &payload)],
        ),
        (
            "statement-dml",
            vec![
                event(2, 10, &query("BEGIN")),
                event(2, 20, &query("INSERT INTO t VALUES (1)")),
            ],
        ),
    ];
    for (name, events) in streams {
        out.push((
            name.to_string(),
            [b"\xfebin".to_vec(), events.concat()].concat(),
        ));
    }
    out
}
