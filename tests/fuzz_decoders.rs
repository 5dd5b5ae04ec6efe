//! Random and mutated input for everything that decodes bytes from the
//! network or disk: the frame checker and the codec for wire messages and
//! change-log records. Nothing may panic, hang or allocate without bound.
//!
//! Two fuzzers share this job. The coverage-guided one is `cargo fuzz`
//! (libFuzzer, nightly): targets `frame`, `change` and `binlog` in `fuzz/`,
//! run by `scripts/fuzz`, corpus in `testdata/fuzz/<target>/`. This file is
//! the stable-Rust side, part of every `cargo test`:
//!
//! - it replays that corpus and every regression case in
//!   `testdata/fuzz/regressions/<target>/` through the very checks the fuzz
//!   targets run (`fuzz/src/lib.rs`, included below), so a crash libFuzzer
//!   once found stays fixed;
//! - it runs a deterministic mutation fuzzer for ROWCAST_FUZZ_SECS seconds
//!   (default 3; `scripts/fuzz` runs it as long as each libFuzzer target).
//!   Seeds are valid encodings of real messages; mutations flip bits, cut,
//!   splice, repeat and rewrite length prefixes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rowcast::log::change::*;
use rowcast::log::codec;
use rowcast::net::frame;
use rowcast::net::wire::{self, MasterMessage, SlaveMessage};
use rowcast::source::position::{Gtid, SourcePosition};

/// The fuzz targets' checks, shared with `cargo fuzz`.
#[path = "../fuzz/src/lib.rs"]
mod checks;

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
                ..Default::default()
            }),
        ],
        events: None,
        xa: None,
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
        // The libFuzzer targets' checks: round trips, and the stream as
        // a master (even mode byte) or, after the greeting, a slave reads it.
        checks::change(&input);
        let mode = rng.next() as u8;
        let mut stream = vec![mode];
        if mode & 1 == 1 {
            stream.extend_from_slice(&wire::greeting());
        }
        stream.extend_from_slice(&framed[..cut]);
        checks::frames(&stream);
        runs += 1;
    }
    eprintln!("{runs} inputs in {secs}s");
    assert!(runs > 1000);
}

/// The directories of `testdata/fuzz/`: `(target, dir)` for each corpus
/// and each `regressions/<target>`.
fn corpus_dirs() -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fuzz");
    let subdirs = |dir: &Path| -> Vec<(String, PathBuf)> {
        let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
            .collect();
        out.sort();
        out
    };
    let mut dirs = Vec::new();
    for (name, path) in subdirs(&root) {
        if name == "regressions" {
            dirs.extend(subdirs(&path));
        } else {
            dirs.push((name, path));
        }
    }
    dirs
}

/// Every corpus file and regression case through its target's checks: no
/// panic, and every generated seed (`seed-*`) still decodes, so a format
/// change cannot leave the fuzzer starting from stale bytes unnoticed.
#[test]
fn fuzz_corpus_and_regressions_replay() {
    let mut files = 0;
    for (target, dir) in corpus_dirs() {
        assert!(
            checks::TARGETS.contains(&target.as_str()),
            "{} is not named after a fuzz target {:?}",
            dir.display(),
            checks::TARGETS
        );
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).unwrap();
            let decoded = std::panic::catch_unwind(|| checks::check(&target, &data))
                .unwrap_or_else(|_| panic!("{} panicked (message above)", path.display()))
                .unwrap();
            let name = path.file_name().unwrap().to_string_lossy();
            assert!(
                !name.starts_with("seed-") || decoded > 0,
                "{} decodes nothing: regenerate the seeds with \
                 `cargo run --manifest-path fuzz/Cargo.toml --bin seed-corpus`",
                path.display()
            );
            files += 1;
        }
    }
    eprintln!("{files} corpus files replayed");
    assert!(files >= 50, "only {files} files in testdata/fuzz");
}

/// The binlog check tolerates only `mysql_common`'s own panics; one of
/// rowcast's (or anyone else's) must still fail the check.
#[test]
fn dependency_guard_lets_other_panics_through() {
    let caught = std::panic::catch_unwind(|| {
        checks::dependency_guard(|| panic!("deliberate: not a mysql_common panic"))
    });
    assert!(caught.is_err());
    assert_eq!(checks::dependency_guard(|| 7), Some(7));
}
