//! Loading seed chunks on several connections to the replica at once.
//!
//! The chunks of one range (or of one whole table) go to the same
//! connection, in order; the slave waits for every chunk handed out
//! before it applies the next transaction of the stream
//! ([`SeedLoaders::barrier`]), so the stream sees each chunk loaded in its
//! place. A chunk read after a column was added or renamed on the primary
//! can reach the replica before that DDL: it fails with "unknown column"
//! and waits (deferred) until the slave applies the next DDL, which comes
//! before the stream passes the chunk's position.

use std::collections::HashMap;

use tokio::sync::mpsc;

use crate::replica::apply::{Applier, ApplyError};
use crate::source::seed_plan::{SeedChunk, SeedRange, SeedTable};

/// One chunk to load with the progress its range will have after it.
pub struct LoadJob {
    pub chunk: SeedChunk,
    pub table: SeedTable,
    pub state: SeedRange,
    /// The range's last loaded key before this chunk.
    pub prior_after: Option<crate::source::seed_plan::Key>,
    /// How many DDL statements the slave had applied when the chunk was
    /// handed out: a loader drops what it knows of the replica's tables
    /// when this moves.
    pub ddl_generation: u64,
    /// Empty the chunk's keys first (set for a range's first chunk of a
    /// session: a load whose commit was under way when the last session
    /// ended may be in).
    pub clear: bool,
}

enum Outcome {
    Loaded(usize),
    Deferred(usize, Box<LoadJob>),
    Failed(ApplyError),
}

pub struct SeedLoaders {
    workers: Vec<mpsc::Sender<LoadJob>>,
    done: mpsc::Receiver<Outcome>,
    outstanding: usize,
    deferred: Vec<LoadJob>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Which connection each range's chunks go to (its first chunk's:
    /// the least busy then), and what each connection has in hand.
    assigned: HashMap<(String, String, u32), usize>,
    busy: Vec<usize>,
}

impl Drop for SeedLoaders {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Whether a load failed because the replica's table does not have the
/// chunk's columns yet.
/// A deadlock or lock wait timeout: the chunk's transaction is gone whole.
fn lock_conflict(e: &ApplyError) -> bool {
    let text = e.to_string();
    text.contains("(error 1213)") || text.contains("(error 1205)")
}

fn schema_ahead(e: &ApplyError) -> bool {
    let text = e.to_string();
    ["(error 1054)", "(error 1136)", "Unknown column"]
        .iter()
        .any(|m| text.contains(m))
}

impl SeedLoaders {
    pub async fn new(applier: &Applier, count: usize) -> Result<SeedLoaders, ApplyError> {
        let (done_tx, done) = mpsc::channel(count * 4);
        let mut workers = Vec::new();
        let mut tasks = Vec::new();
        for worker in 0..count.max(1) {
            let mut loader = applier.loader().await?;
            let (tx, mut rx) = mpsc::channel::<LoadJob>(4);
            let done_tx = done_tx.clone();
            tasks.push(tokio::spawn(async move {
                let mut generation = 0;
                // Ranges whose earlier chunk waits (deferred): their later
                // chunks wait too, or a later one's progress row would
                // claim the earlier one's keys.
                let mut blocked: Vec<(String, String, u32)> = Vec::new();
                while let Some(job) = rx.recv().await {
                    // The replica's tables may have changed (DDL on the
                    // stream): what this connection knows of them goes.
                    if job.ddl_generation != generation {
                        loader.forget_tables();
                        generation = job.ddl_generation;
                        blocked.clear();
                    }
                    let id = (
                        job.chunk.database.clone(),
                        job.chunk.name.clone(),
                        job.chunk.range,
                    );
                    if blocked.contains(&id) {
                        if done_tx
                            .send(Outcome::Deferred(worker, Box::new(job)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        continue;
                    }
                    let mut attempt = 0;
                    let outcome = loop {
                        attempt += 1;
                        match loader
                            .seed_load(
                                &job.chunk,
                                &job.table,
                                &job.state,
                                job.prior_after,
                                job.clear,
                            )
                            .await
                        {
                            Ok(()) => break Outcome::Loaded(worker),
                            Err(e) if schema_ahead(&e) => {
                                blocked.push(id);
                                break Outcome::Deferred(worker, Box::new(job));
                            }
                            // Two loaders' locks crossed: the chunk was
                            // rolled back whole; load it again.
                            Err(e) if lock_conflict(&e) && attempt < 10 => {
                                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt))
                                    .await;
                            }
                            Err(e) => break Outcome::Failed(e),
                        }
                    };
                    let failed = matches!(outcome, Outcome::Failed(_));
                    if done_tx.send(outcome).await.is_err() || failed {
                        // Nothing after a failed chunk may load: its range
                        // would claim keys that are not there.
                        return;
                    }
                }
            }));
            workers.push(tx);
        }
        Ok(SeedLoaders {
            busy: vec![0; workers.len()],
            workers,
            done,
            outstanding: 0,
            deferred: Vec::new(),
            tasks,
            assigned: HashMap::new(),
        })
    }

    /// Hands a chunk to its range's connection.
    pub async fn dispatch(&mut self, job: LoadJob) -> Result<(), ApplyError> {
        // Once one chunk of a range waits, the later ones wait behind it.
        if self
            .deferred
            .iter()
            .any(|d| same_range(&d.chunk, &job.chunk))
        {
            self.deferred.push(job);
            return Ok(());
        }
        let id = (
            job.chunk.database.clone(),
            job.chunk.name.clone(),
            job.chunk.range,
        );
        let least_busy = (0..self.busy.len())
            .min_by_key(|&w| self.busy[w])
            .unwrap_or(0);
        let mut job = job;
        let i = match self.assigned.get(&id) {
            Some(&i) => i,
            None => {
                job.clear = true;
                self.assigned.insert(id, least_busy);
                least_busy
            }
        };
        // A full queue: take finished loads meanwhile, or this waits on a
        // worker that waits on us.
        let mut job = Some(job);
        while let Some(j) = job.take() {
            match self.workers[i].try_send(j) {
                Ok(()) => {
                    self.outstanding += 1;
                    self.busy[i] += 1;
                }
                Err(mpsc::error::TrySendError::Full(j)) => {
                    job = Some(j);
                    self.take_one().await?;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    return Err(ApplyError::Lost("a seed loader connection ended".into()))
                }
            }
        }
        Ok(())
    }

    async fn take_one(&mut self) -> Result<(), ApplyError> {
        match self.done.recv().await {
            Some(Outcome::Loaded(w)) => {
                self.outstanding -= 1;
                self.busy[w] -= 1;
                Ok(())
            }
            Some(Outcome::Deferred(w, job)) => {
                self.outstanding -= 1;
                self.busy[w] -= 1;
                tracing::info!(database = %job.chunk.database, table = %job.chunk.name, "seed chunk has columns the replica's table does not have yet; loading it after the next DDL");
                self.deferred.push(*job);
                Ok(())
            }
            Some(Outcome::Failed(e)) => {
                self.outstanding -= 1;
                Err(e)
            }
            None => Err(ApplyError::Lost("the seed loaders ended".into())),
        }
    }

    /// Waits until every chunk handed out is loaded (or deferred).
    pub async fn barrier(&mut self) -> Result<(), ApplyError> {
        while self.outstanding > 0 {
            self.take_one().await?;
        }
        Ok(())
    }

    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// After a DDL: the deferred chunks are tried again, in order.
    pub async fn retry_deferred(&mut self, ddl_generation: u64) -> Result<(), ApplyError> {
        for mut job in std::mem::take(&mut self.deferred) {
            job.ddl_generation = ddl_generation;
            self.dispatch(job).await?;
        }
        self.barrier().await
    }
}

fn same_range(a: &SeedChunk, b: &SeedChunk) -> bool {
    a.database == b.database && a.name == b.name && a.range == b.range
}
