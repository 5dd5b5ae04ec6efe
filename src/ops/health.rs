//! What `/readyz` and `/status` say ([`crate::ops::http`]): the rules that
//! make a master or a slave ready, and a slave's own view of itself
//! ([`SlaveHealth`], which the slave's supervisor and applier keep
//! current).
//!
//! **Slave readiness:** streaming (connected, seeded) with its lag under
//! `--max-lag`. Its lag is now minus the primary commit time of the oldest
//! transaction it has received and not applied (0 when nothing is
//! pending), so a slave blocked inside a commit keeps counting. A slave
//! with `--delay D` compares lag minus D: waiting out its delay is what it
//! was asked to do. What it has not received (the master behind, or down)
//! it cannot see: a disconnected slave is not ready anyway, and the
//! master's own `/readyz` and `rowcast_master_behind_primary_seconds` tell
//! the rest.
//!
//! **Master readiness:** its binlog reader is reading the primary (or the
//! `--binlog-dir`) and has heard from it within [`READER_SILENCE`].

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::net::wire::SlaveSettings;
use crate::ops::http::{BoxFuture, Probe};
use crate::ops::metrics::Metrics;
use crate::source::position::SourcePosition;

/// A reader that heard nothing (no event, no heartbeat) for this long is
/// not reading, whatever its connection says: an idle primary sends a
/// heartbeat every 2 s, an idle directory is looked at more often.
pub const READER_SILENCE: Duration = Duration::from_secs(6);

/// What the master's binlog reader is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    /// Not connected yet.
    Starting,
    /// Streaming from the primary (or reading the files).
    Reading,
    /// The last attempt failed with this; it reconnects.
    Lost(String),
}

/// Whether a master is ready: `Err` holds the one-line reason.
pub fn master_readiness(
    state: &SourceState,
    heard_ago: Option<Duration>,
    files: bool,
) -> Result<(), String> {
    let what = if files {
        "the binlog files"
    } else {
        "the primary"
    };
    match state {
        SourceState::Starting => Err(format!("starting: not reading {what} yet")),
        SourceState::Lost(cause) if files => Err(format!("cannot read the binlog files: {cause}")),
        SourceState::Lost(cause) => Err(format!("primary unreachable, reconnecting: {cause}")),
        SourceState::Reading => match heard_ago {
            Some(ago) if ago <= READER_SILENCE => Ok(()),
            Some(ago) => Err(format!("nothing heard from {what} for {}s", ago.as_secs())),
            None => Err(format!("nothing heard from {what} yet")),
        },
    }
}

/// Where a slave is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlaveState {
    /// Connecting to its replica, or to the master the first time.
    Starting,
    /// Connected, copying the primary's data (a seed or a snapshot).
    Seeding,
    /// Connected and applying the stream.
    Streaming,
    /// Between sessions: the last one ended with this; it reconnects.
    Disconnected(String),
    /// Stopped for good with this error.
    Failed(String),
}

impl SlaveState {
    fn name(&self) -> &'static str {
        match self {
            SlaveState::Starting => "starting",
            SlaveState::Seeding => "seeding",
            SlaveState::Streaming => "streaming",
            SlaveState::Disconnected(_) => "disconnected",
            SlaveState::Failed(_) => "failed",
        }
    }
}

/// A slave's own view, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlaveView {
    pub role: &'static str,
    pub name: String,
    pub master: String,
    /// `starting`, `seeding`, `streaming`, `disconnected` or `failed`.
    pub state: &'static str,
    pub ready: bool,
    /// Why it is not ready (`None` when it is).
    pub reason: Option<String>,
    pub applied_seq: u64,
    pub applied_position: Option<SourcePosition>,
    /// See the module doc; includes `--delay`.
    pub lag_seconds: u64,
    pub max_lag_seconds: u64,
    pub settings: SlaveSettings,
    /// The error that ended the last session or the run.
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct Inner {
    state: SlaveState,
    applied_seq: u64,
    applied_position: Option<SourcePosition>,
    /// Primary commit time of the oldest transaction received and not
    /// applied (epoch seconds).
    pending_since: Option<u32>,
    settings: SlaveSettings,
    last_error: Option<String>,
}

/// A slave's state for `/readyz` and `/status`, shared between its
/// supervisor, its applier and the HTTP server.
#[derive(Debug)]
pub struct SlaveHealth {
    name: String,
    master: String,
    max_lag: Duration,
    delay: Duration,
    inner: Mutex<Inner>,
}

impl SlaveHealth {
    pub fn new(name: &str, master: &str, max_lag: Duration, delay: Duration) -> SlaveHealth {
        SlaveHealth {
            name: name.to_string(),
            master: master.to_string(),
            max_lag,
            delay,
            inner: Mutex::new(Inner {
                state: SlaveState::Starting,
                applied_seq: 0,
                applied_position: None,
                pending_since: None,
                settings: SlaveSettings::default(),
                last_error: None,
            }),
        }
    }

    pub fn set_state(&self, state: SlaveState) {
        let mut inner = self.inner.lock().unwrap();
        if let SlaveState::Disconnected(e) | SlaveState::Failed(e) = &state {
            inner.last_error = Some(e.clone());
        }
        if !matches!(state, SlaveState::Streaming | SlaveState::Seeding) {
            // Nothing is being applied: what was received is gone with
            // the session (and counted again when it comes back).
            inner.pending_since = None;
        }
        inner.state = state;
    }

    /// A session began to apply, seeding or streaming, from checkpoint
    /// `seq` at `position`.
    pub fn connected(&self, seeding: bool, seq: u64, position: Option<SourcePosition>) {
        self.set_state(if seeding {
            SlaveState::Seeding
        } else {
            SlaveState::Streaming
        });
        let mut inner = self.inner.lock().unwrap();
        inner.applied_seq = seq;
        inner.applied_position = position;
    }

    pub fn set_settings(&self, settings: SlaveSettings) {
        self.inner.lock().unwrap().settings = settings;
    }

    /// A batch whose oldest transaction committed on the primary at
    /// `timestamp` is being applied.
    pub fn applying(&self, timestamp: u32) {
        let mut inner = self.inner.lock().unwrap();
        inner.pending_since = Some(inner.pending_since.map_or(timestamp, |t| t.min(timestamp)));
    }

    /// A batch was committed, through `seq` at `position`; `next` is the
    /// commit time the next pending transaction is at least as old as
    /// (`None`: nothing more is queued).
    pub fn applied(
        &self,
        seq: u64,
        position: Option<SourcePosition>,
        next: Option<u32>,
        seeding: bool,
    ) {
        let mut inner = self.inner.lock().unwrap();
        inner.applied_seq = seq;
        if position.is_some() {
            inner.applied_position = position;
        }
        inner.pending_since = next;
        if matches!(inner.state, SlaveState::Streaming | SlaveState::Seeding) {
            inner.state = if seeding {
                SlaveState::Seeding
            } else {
                SlaveState::Streaming
            };
        }
    }

    /// Its lag at `now` (epoch seconds).
    pub fn lag_seconds(&self, now: u64) -> u64 {
        lag_at(self.inner.lock().unwrap().pending_since, now)
    }

    /// Ready, or why not, at `now` (epoch seconds).
    pub fn readiness(&self, now: u64) -> Result<(), String> {
        let inner = self.inner.lock().unwrap();
        self.judge(&inner, now)
    }

    fn judge(&self, inner: &Inner, now: u64) -> Result<(), String> {
        match &inner.state {
            SlaveState::Starting => Err(format!(
                "starting: not connected to the master {} yet",
                self.master
            )),
            SlaveState::Seeding => Err("seeding: copying the primary's data".into()),
            SlaveState::Disconnected(cause) => Err(format!("disconnected, reconnecting: {cause}")),
            SlaveState::Failed(cause) => Err(format!("failed: {cause}")),
            SlaveState::Streaming => {
                let lag = lag_at(inner.pending_since, now);
                let delay = self.delay.as_secs();
                let counted = lag.saturating_sub(delay);
                if counted > self.max_lag.as_secs() {
                    Err(if delay > 0 {
                        format!(
                            "lag {lag}s minus --delay {delay}s is {counted}s, over --max-lag {}s",
                            self.max_lag.as_secs()
                        )
                    } else {
                        format!("lag {lag}s over --max-lag {}s", self.max_lag.as_secs())
                    })
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Its view at `now` (epoch seconds), for `/status`.
    pub fn view(&self, now: u64) -> SlaveView {
        let inner = self.inner.lock().unwrap();
        let readiness = self.judge(&inner, now);
        SlaveView {
            role: "slave",
            name: self.name.clone(),
            master: self.master.clone(),
            state: inner.state.name(),
            ready: readiness.is_ok(),
            reason: readiness.err(),
            applied_seq: inner.applied_seq,
            applied_position: inner.applied_position.clone(),
            lag_seconds: lag_at(inner.pending_since, now),
            max_lag_seconds: self.max_lag.as_secs(),
            settings: inner.settings.clone(),
            last_error: inner.last_error.clone(),
        }
    }
}

/// `value` as pretty JSON (what `rowcast status --json` prints).
pub fn json_text(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot encode the status: {e}\"}}"))
}

fn now_secs() -> u64 {
    crate::net::serve::now_ms() / 1000
}

impl Probe for SlaveHealth {
    fn readiness(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { SlaveHealth::readiness(self, now_secs()) })
    }

    fn status(&self) -> BoxFuture<'_, String> {
        Box::pin(async move { json_text(&self.view(now_secs())) })
    }

    fn refresh(&self, metrics: &Metrics) {
        metrics.lag_seconds.set(self.lag_seconds(now_secs()));
    }
}

/// Lag at `now` with the oldest pending transaction committed at
/// `pending_since`: pending work counts at least 1 s (commit times have
/// whole seconds).
fn lag_at(pending_since: Option<u32>, now: u64) -> u64 {
    pending_since.map_or(0, |t| now.saturating_sub(u64::from(t)).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(delay: u64) -> SlaveHealth {
        SlaveHealth::new(
            "s",
            "m:9999",
            Duration::from_secs(60),
            Duration::from_secs(delay),
        )
    }

    #[test]
    fn a_slave_is_ready_only_streaming_within_max_lag() {
        let h = health(0);
        assert!(h.readiness(1000).unwrap_err().starts_with("starting"));
        h.connected(true, 0, None);
        assert!(h.readiness(1000).unwrap_err().starts_with("seeding"));
        h.connected(false, 5, None);
        assert_eq!(h.readiness(1000), Ok(()));
        // Blocked in a commit: the lag grows while the batch waits.
        h.applying(900);
        assert_eq!(h.readiness(960), Ok(()));
        assert_eq!(
            h.readiness(1000).unwrap_err(),
            "lag 100s over --max-lag 60s"
        );
        h.applied(7, None, None, false);
        assert_eq!(h.readiness(1000), Ok(()));
        assert_eq!(h.lag_seconds(1000), 0);
        h.set_state(SlaveState::Disconnected(
            "master m:9999 is unavailable".into(),
        ));
        let why = h.readiness(1000).unwrap_err();
        assert!(
            why.starts_with("disconnected") && why.contains("unavailable"),
            "{why}"
        );
        let v = h.view(1000);
        assert_eq!(
            (v.state, v.ready, v.applied_seq),
            ("disconnected", false, 7)
        );
        assert!(v.last_error.unwrap().contains("unavailable"));
    }

    #[test]
    fn a_delayed_slave_counts_its_lag_minus_the_delay() {
        let h = health(3600);
        h.connected(false, 5, None);
        h.applying(1000);
        // An hour and a half behind, an hour of it on purpose.
        assert_eq!(h.readiness(1000 + 3600 + 59), Ok(()));
        let why = h.readiness(1000 + 3600 + 61).unwrap_err();
        assert!(why.contains("minus --delay 3600s is 61s"), "{why}");
        assert_eq!(h.view(1000 + 3600 + 61).lag_seconds, 3661);
    }

    #[test]
    fn a_master_is_ready_while_its_reader_hears_from_the_primary() {
        let r = |s: &SourceState, ago: Option<u64>| {
            master_readiness(s, ago.map(Duration::from_secs), false)
        };
        assert!(r(&SourceState::Starting, None)
            .unwrap_err()
            .starts_with("starting"));
        assert_eq!(r(&SourceState::Reading, Some(1)), Ok(()));
        assert!(r(&SourceState::Reading, Some(30))
            .unwrap_err()
            .contains("30s"));
        let why = r(&SourceState::Lost("connection refused".into()), Some(1)).unwrap_err();
        assert!(
            why.contains("primary unreachable") && why.contains("refused"),
            "{why}"
        );
        let files = master_readiness(&SourceState::Lost("gap".into()), None, true).unwrap_err();
        assert!(files.contains("binlog files"), "{files}");
    }
}
