//! Prometheus metrics for master and slave (`--metrics HOST:PORT`): plain
//! counters and gauges in atomics, served as text by a minimal HTTP
//! responder. Nothing here blocks the pipeline: updates are relaxed atomic
//! stores.
//!
//! A master also exports one series per slave, labelled `slave="<name>"`
//! (`rowcast_slave_lag_seconds`, `rowcast_slave_lag_transactions`,
//! `rowcast_slave_stalled`, `rowcast_slave_connected`): the server
//! refreshes them every few seconds from the same computation as `rowcast
//! status`, so the two always agree.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One named value.
pub struct Metric {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: &'static str,
    value: AtomicU64,
}

impl Metric {
    const fn new(name: &'static str, help: &'static str, kind: &'static str) -> Metric {
        Metric {
            name,
            help,
            kind,
            value: AtomicU64::new(0),
        }
    }
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }
    pub fn set(&self, n: u64) {
        self.value.store(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

pub struct Metrics {
    pub transactions: Metric,
    pub rows: Metric,
    pub bytes: Metric,
    pub last_seq: Metric,
    pub lag_seconds: Metric,
    pub snapshot_rows: Metric,
    pub reconnects: Metric,
    pub errors: Metric,
    pub slaves_connected: Metric,
    /// Per-slave series of a master (see the module doc).
    slaves: Mutex<Vec<SlaveGauges>>,
    served: AtomicBool,
}

/// One slave's values as the master last computed them.
#[derive(Debug, Clone, PartialEq)]
pub struct SlaveGauges {
    pub name: String,
    pub lag_seconds: u64,
    pub lag_transactions: u64,
    pub stalled: bool,
    pub connected: bool,
    /// Seeding progress: rows and bytes copied, their estimates, and the
    /// seconds to go (0 when not seeding or not known yet).
    pub snapshot_rows: u64,
    pub snapshot_estimated_rows: u64,
    pub snapshot_bytes: u64,
    pub snapshot_estimated_bytes: u64,
    pub snapshot_eta_seconds: u64,
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics {
            transactions: Metric::new("rowcast_transactions_total", "Source transactions logged (master) or applied (slave).", "counter"),
            rows: Metric::new("rowcast_rows_total", "Row changes logged (master) or applied (slave).", "counter"),
            bytes: Metric::new("rowcast_bytes_total", "Bytes appended to the change log (master) or received (slave).", "counter"),
            last_seq: Metric::new("rowcast_last_seq", "Sequence number of the newest logged (master) or applied (slave) transaction.", "gauge"),
            lag_seconds: Metric::new("rowcast_lag_seconds", "Seconds between the source commit of the last applied transaction and now, while behind.", "gauge"),
            snapshot_rows: Metric::new("rowcast_snapshot_rows_total", "Rows copied by snapshots.", "counter"),
            reconnects: Metric::new("rowcast_reconnects_total", "Reconnections to the primary (master) or the master (slave).", "counter"),
            errors: Metric::new("rowcast_errors_total", "Errors that ended a connection or a run.", "counter"),
            slaves_connected: Metric::new("rowcast_slaves_connected", "Slaves connected to this master.", "gauge"),
            slaves: Mutex::new(Vec::new()),
            served: AtomicBool::new(false),
        })
    }

    /// Whether anyone can read these (`--metrics` was given).
    pub fn is_served(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    /// Replaces the per-slave series.
    pub fn set_slaves(&self, slaves: Vec<SlaveGauges>) {
        *self.slaves.lock().unwrap() = slaves;
    }

    fn all(&self) -> [&Metric; 9] {
        [
            &self.transactions,
            &self.rows,
            &self.bytes,
            &self.last_seq,
            &self.lag_seconds,
            &self.snapshot_rows,
            &self.reconnects,
            &self.errors,
            &self.slaves_connected,
        ]
    }

    /// The Prometheus text exposition.
    pub fn render(&self, role: &str) -> String {
        let mut out = String::new();
        for m in self.all() {
            let _ = writeln!(out, "# HELP {} {}", m.name, m.help);
            let _ = writeln!(out, "# TYPE {} {}", m.name, m.kind);
            let _ = writeln!(out, "{}{{role=\"{role}\"}} {}", m.name, m.get());
        }
        let slaves = self.slaves.lock().unwrap();
        if slaves.is_empty() {
            return out;
        }
        type Family = (&'static str, &'static str, fn(&SlaveGauges) -> u64);
        let families: [Family; 9] = [
            ("rowcast_slave_lag_seconds", "Seconds since the primary committed the oldest transaction this slave has not applied (0: nothing pending).", |s| s.lag_seconds),
            ("rowcast_slave_lag_transactions", "Change-log records this slave has not applied.", |s| s.lag_transactions),
            ("rowcast_slave_stalled", "1 while this slave has work pending but has not advanced for --stall-after.", |s| u64::from(s.stalled)),
            ("rowcast_slave_connected", "1 while this slave is connected (or reading the JetStream stream).", |s| u64::from(s.connected)),
            ("rowcast_slave_snapshot_rows", "Rows this slave's seed has copied.", |s| s.snapshot_rows),
            ("rowcast_slave_snapshot_estimated_rows", "Rows this slave's seed is estimated to copy (table statistics).", |s| s.snapshot_estimated_rows),
            ("rowcast_slave_snapshot_bytes", "Bytes of rows this slave's seed has copied.", |s| s.snapshot_bytes),
            ("rowcast_slave_snapshot_estimated_bytes", "Bytes this slave's seed is estimated to copy (table statistics).", |s| s.snapshot_estimated_bytes),
            ("rowcast_slave_snapshot_eta_seconds", "Seconds this slave's seed needs yet at its rate so far (0: not seeding, or not known yet).", |s| s.snapshot_eta_seconds),
        ];
        for (name, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for s in slaves.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{role=\"{role}\",slave=\"{}\"}} {}",
                    label(&s.name),
                    value(s)
                );
            }
        }
        out
    }
}

/// Serves `GET /metrics` (any path, really) until the process ends.
pub async fn serve(addr: String, metrics: Arc<Metrics>, role: &'static str) -> std::io::Result<()> {
    let listener = TcpListener::bind(&addr).await?;
    metrics.served.store(true, Ordering::Relaxed);
    tracing::info!(%addr, "metrics at http://{addr}/metrics");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf)).await;
                let body = metrics.render(role);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_slave_series_carry_an_escaped_slave_label() {
        let m = Metrics::new();
        m.set_slaves(vec![SlaveGauges {
            name: "east \"1\"".into(),
            lag_seconds: 7,
            lag_transactions: 3,
            stalled: true,
            connected: true,
            snapshot_rows: 10,
            snapshot_estimated_rows: 40,
            snapshot_bytes: 1000,
            snapshot_estimated_bytes: 4000,
            snapshot_eta_seconds: 30,
        }]);
        let text = m.render("master");
        assert!(
            text.contains("rowcast_slave_lag_seconds{role=\"master\",slave=\"east \\\"1\\\"\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("rowcast_slave_stalled{role=\"master\",slave=\"east \\\"1\\\"\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "rowcast_slave_snapshot_eta_seconds{role=\"master\",slave=\"east \\\"1\\\"\"} 30"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE rowcast_slave_lag_transactions gauge"),
            "{text}"
        );
    }
}
