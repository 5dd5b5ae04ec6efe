//! Random and mutated input for everything that decodes bytes from the
//! network or disk: the frame checker and the codec for wire messages and
//! change-log records. Nothing may panic, hang or allocate without bound.
//!
//! `cargo fuzz` needs a nightly toolchain, which cannot be installed here;
//! this is a stable-Rust fuzzer with a deterministic generator. It runs for
//! ROWCAST_FUZZ_SECS seconds (default 3 in the test suite; `scripts/fuzz`
//! runs it longer). Seeds are valid encodings of real messages; mutations
//! flip bits, cut, splice, repeat and rewrite length prefixes.

use std::time::{Duration, Instant};

use rowcast::change::*;
use rowcast::codec;
use rowcast::frame;
use rowcast::position::{Gtid, SourcePosition};
use rowcast::wire::{MasterMessage, SlaveMessage};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let txn = Transaction {
        position: SourcePosition {
            epoch: 0,
            file: "binlog.000007".into(),
            offset: 99_999,
            gtid: Some(Gtid::MariaDb {
                domain: 1,
                server: 2,
                seq: 3,
            }),
        },
        timestamp: 1_700_000_000,
        part: 0,
        more: false,
        tables: vec![TableSchema {
            database: "d".into(),
            name: "t".into(),
            columns: vec![ColumnDef {
                name: "id".into(),
                kind: ColumnKind::BigInt,
                unsigned: true,
                collation: 0,
            }],
            primary_key: vec![0],
        }],
        changes: vec![
            Change::Insert {
                table: 0,
                rows: vec![vec![Value::UInt(1)], vec![Value::Bytes(vec![0xff; 40])]],
            },
            Change::Update {
                table: 0,
                rows: vec![(vec![Value::Null], vec![Value::Decimal("1.5".into())])],
            },
            Change::Ddl(Ddl {
                database: Some("d".into()),
                sql: b"DROP TABLE t".to_vec(),
                sql_mode: Some(7),
                charset: None,
            }),
        ],
    };
    vec![
        codec::encode(&MasterMessage::Transaction(42, txn.clone())).unwrap(),
        codec::encode(&MasterMessage::Heartbeat {
            last_seq: 1,
            position: None,
            now_ms: 5,
        })
        .unwrap(),
        codec::encode(&SlaveMessage::Hello {
            protocol: 1,
            name: "s".into(),
            auth: Some(vec![1; 32]),
            after: Some(txn.position.clone()),
        })
        .unwrap(),
        codec::encode(&SlaveMessage::StatusRequest { auth: None }).unwrap(),
        codec::encode(&(3u64, &txn)).unwrap(),
    ]
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let n = rng.below(b.len());
                b.truncate(n);
            }
            2 => {
                let i = rng.below(b.len() + 1);
                let junk: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
                b.splice(i..i, junk);
            }
            3 if !b.is_empty() => {
                // A huge varint length somewhere: must not be allocated.
                let i = rng.below(b.len());
                b.splice(i..i, [0xfd, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]);
            }
            4 => b = (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
            _ => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(other.len());
                b.extend_from_slice(&other[cut..]);
            }
        }
    }
    b
}

#[test]
fn decoders_survive_random_and_mutated_input() {
    let secs: u64 = std::env::var("ROWCAST_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let seeds = seeds();
    for s in &seeds {
        assert!(
            codec::decode::<MasterMessage>(s).is_ok()
                || codec::decode::<SlaveMessage>(s).is_ok()
                || codec::decode::<(u64, Transaction)>(s).is_ok()
        );
    }
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        let input = mutate(&mut rng, &seeds);
        let _ = codec::decode::<MasterMessage>(&input);
        let _ = codec::decode::<SlaveMessage>(&input);
        let _ = codec::decode::<(u64, Transaction)>(&input);
        let _ = codec::decode_prefix::<(u64, SourcePosition, u32)>(&input);
        let mut framed = frame::header(input.len()).to_vec();
        framed.extend_from_slice(&input);
        let cut = rng.below(framed.len() + 1);
        if let Ok(Some(n)) = frame::check(&framed[..cut], 1 << 16) {
            assert!(n <= cut);
        }
        runs += 1;
    }
    eprintln!("{runs} inputs in {secs}s");
    assert!(runs > 1000);
}
