//! Prometheus metrics for master and slave (`--metrics HOST:PORT`): plain
//! counters and gauges in atomics, served as text by a minimal HTTP
//! responder. Nothing here blocks the pipeline: updates are relaxed atomic
//! stores.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
        })
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
        out
    }
}

/// Serves `GET /metrics` (any path, really) until the process ends.
pub async fn serve(addr: String, metrics: Arc<Metrics>, role: &'static str) -> std::io::Result<()> {
    let listener = TcpListener::bind(&addr).await?;
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
