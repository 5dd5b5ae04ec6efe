//! The master's side of seeding one slave: rounds of chunk reads on
//! `--snapshot-threads` connections to the primary, between which the
//! handler sends the slave its stream.
//!
//! The one rule the handler keeps (see `replica/seed_gate.rs` for why it
//! is enough): a chunk read at position P reaches the slave before any
//! transaction that ends after P. The handler sends no transaction while a
//! round is being read, and a round starts only after every transaction
//! sent so far was sent, so those all end before the primary position any
//! of the round's read views opens at. Between rounds the stream catches
//! up with what the log held when the round ended.

use std::time::Instant;

use tokio::sync::mpsc;

use crate::source::chunk_read::{self, ChunkReader, PointMethod};
use crate::source::position::SourcePosition;
use crate::source::seed_plan::{SeedChunk, SeedTable};
use crate::source::snapshot::SnapshotError;
use crate::source::Source;

/// Chunks one range reads in a round, one after the other.
const CHUNKS_PER_ROUND: usize = 4;

/// What one reader does in a round.
enum Unit {
    /// A range of a ranged table: a few chunks.
    Range(usize, u32),
    /// Whole tables read together at one position.
    Group(Vec<usize>),
}

pub struct Seeder {
    tables: Vec<SeedTable>,
    /// Kept between rounds (`None`: not opened yet, or lost to an error).
    readers: Vec<Option<ChunkReader>>,
    source: Source,
    method: PointMethod,
    epoch: u32,
    pub progress: SeedProgress,
}

/// Rows and bytes copied of the estimates, for status and metrics.
#[derive(Debug, Clone)]
pub struct SeedProgress {
    pub rows: u64,
    pub bytes: u64,
    pub estimated_rows: u64,
    pub estimated_bytes: u64,
    /// When this connection's copying began, and the rows done then.
    pub since: Instant,
    pub rows_at_start: u64,
}

impl SeedProgress {
    /// Seconds to go at the rate since this connection began copying.
    pub fn eta_seconds(&self) -> Option<u64> {
        let done = self.rows.saturating_sub(self.rows_at_start) as f64;
        let secs = self.since.elapsed().as_secs_f64();
        if done < 1.0 || secs < 1.0 {
            return None;
        }
        let left = self.estimated_rows.saturating_sub(self.rows) as f64;
        Some((left / (done / secs)).ceil() as u64)
    }
}

/// A reader back from a round (`None`: lost to an error) and how its
/// unit went.
type ReaderOutcome = (Option<ChunkReader>, Result<(), SnapshotError>);

/// A round in flight: its chunks as they are read, and the readers back
/// when it is over.
pub struct Round {
    pub rx: mpsc::Receiver<SeedChunk>,
    task: tokio::task::JoinHandle<Vec<ReaderOutcome>>,
}

impl Seeder {
    pub fn new(
        tables: Vec<SeedTable>,
        source: Source,
        method: PointMethod,
        epoch: u32,
        threads: usize,
    ) -> Seeder {
        let rows: u64 = tables.iter().map(|t| t.rows_done()).sum();
        let progress = SeedProgress {
            rows,
            bytes: tables.iter().map(|t| t.bytes_done()).sum(),
            estimated_rows: tables
                .iter()
                .map(|t| t.estimated_rows)
                .sum::<u64>()
                .max(rows),
            estimated_bytes: tables.iter().map(|t| t.estimated_bytes).sum(),
            since: Instant::now(),
            rows_at_start: rows,
        };
        Seeder {
            tables,
            readers: (0..threads.max(1)).map(|_| None).collect(),
            source,
            method,
            epoch,
            progress,
        }
    }

    pub fn is_done(&self) -> bool {
        self.tables.iter().all(|t| t.is_done())
    }

    fn units(&self) -> Vec<Unit> {
        let mut units = Vec::new();
        let mut groups: Vec<(u32, Vec<usize>)> = Vec::new();
        for (i, t) in self.tables.iter().enumerate() {
            if t.key.is_some() {
                for (r, range) in t.ranges.iter().enumerate() {
                    if !range.done {
                        units.push(Unit::Range(i, r as u32));
                    }
                }
            } else {
                match groups.iter_mut().find(|(g, _)| *g == t.group) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((t.group, vec![i])),
                }
            }
        }
        // A group is read whole again if any member is not done: its
        // members must sit at one position (foreign keys: a cascade the
        // replica did not see between two positions would be lost).
        groups.retain(|(_, members)| members.iter().any(|&i| !self.tables[i].is_done()));
        // Whole tables first: they are read in one go, and the ranges of
        // big tables then share the threads.
        let mut all: Vec<Unit> = groups.into_iter().map(|(_, m)| Unit::Group(m)).collect();
        all.append(&mut units);
        all
    }

    /// Starts reading the next round, `None` when nothing is left. No
    /// chunk is read at a position before `floor`, the end of the last
    /// transaction sent.
    pub fn start_round(&mut self, floor: Option<SourcePosition>) -> Option<Round> {
        let units = self.units();
        if units.is_empty() {
            return None;
        }
        let threads = self.readers.len();
        let (tx, rx) = mpsc::channel::<SeedChunk>(threads * 2);
        let mut jobs = Vec::new();
        for (unit, slot) in units.into_iter().zip(self.readers.iter_mut()).take(threads) {
            let reader = slot.take();
            let tables: Vec<SeedTable> = match &unit {
                Unit::Range(i, _) => vec![self.tables[*i].clone()],
                Unit::Group(members) => members.iter().map(|&i| self.tables[i].clone()).collect(),
            };
            let range = match unit {
                Unit::Range(_, r) => Some(r),
                Unit::Group(_) => None,
            };
            let (source, method, epoch, tx, floor) = (
                self.source.clone(),
                self.method,
                self.epoch,
                tx.clone(),
                floor.clone(),
            );
            jobs.push(tokio::spawn(async move {
                let mut reader = match reader {
                    Some(r) => r,
                    None => match ChunkReader::open(&source, method, epoch).await {
                        Ok(r) => r,
                        Err(e) => return (None, Err(e)),
                    },
                };
                let result = read_unit(&mut reader, tables, range, &tx, floor.as_ref()).await;
                // A reader that failed may be in any state: a new one next.
                match result {
                    Ok(()) => (Some(reader), Ok(())),
                    Err(e) => (None, Err(e)),
                }
            }));
        }
        drop(tx);
        let task = tokio::spawn(async move {
            let mut out = Vec::new();
            for job in jobs {
                out.push(job.await.unwrap_or_else(|e| {
                    (
                        None,
                        Err(SnapshotError::Read {
                            object: "seed".into(),
                            reason: e.to_string(),
                        }),
                    )
                }));
            }
            out
        });
        Some(Round { rx, task })
    }

    /// Ends a round whose chunks have all been taken: the readers come
    /// back; the first error, if any, is returned.
    pub async fn finish_round(&mut self, round: Round) -> Result<(), SnapshotError> {
        let results = round.task.await.map_err(|e| SnapshotError::Read {
            object: "seed".into(),
            reason: e.to_string(),
        })?;
        let mut first_error = None;
        let mut slots = self.readers.iter_mut().filter(|s| s.is_none());
        for (reader, result) in results {
            if let Some(slot) = slots.next() {
                *slot = reader;
            }
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A chunk was sent: the plan moves on.
    pub fn note(&mut self, chunk: &SeedChunk) {
        self.progress.rows += chunk.rows.len() as u64;
        self.progress.bytes += chunk_read::chunk_bytes(chunk);
        self.progress.estimated_rows = self.progress.estimated_rows.max(self.progress.rows);
        let Some(t) = self
            .tables
            .iter_mut()
            .find(|t| t.database == chunk.database && t.name == chunk.name)
        else {
            return;
        };
        if let Some(r) = t.ranges.get_mut(chunk.range as usize) {
            r.after = chunk.upto.or(r.after);
            r.done = chunk.done;
        }
    }
}

/// Reads one unit, sending its chunks.
async fn read_unit(
    reader: &mut ChunkReader,
    mut tables: Vec<SeedTable>,
    range: Option<u32>,
    tx: &mpsc::Sender<SeedChunk>,
    floor: Option<&SourcePosition>,
) -> Result<(), SnapshotError> {
    match range {
        Some(r) => {
            let table = &mut tables[0];
            for _ in 0..CHUNKS_PER_ROUND {
                let chunk = reader.read_range(table, r, floor).await?;
                let range = &mut table.ranges[r as usize];
                range.after = chunk.upto.or(range.after);
                range.done = chunk.done;
                let done = chunk.done;
                if tx.send(chunk).await.is_err() || done {
                    break;
                }
            }
            Ok(())
        }
        None => {
            let refs: Vec<&SeedTable> = tables.iter().collect();
            reader
                .read_whole(&refs, floor, |chunk| {
                    let tx = tx.clone();
                    async move { tx.send(chunk).await.is_ok() }
                })
                .await
        }
    }
}
