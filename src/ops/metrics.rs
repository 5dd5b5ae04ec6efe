//! Prometheus metrics for master and slave (served on `--metrics
//! HOST:PORT` by [`crate::ops::http`]): plain counters and gauges in
//! atomics. Nothing here blocks the pipeline: updates are relaxed atomic
//! stores.
//!
//! Names follow Prometheus' conventions: base units (`_seconds`,
//! `_bytes`), `_total` on counters only, and one meaning per name. A
//! master and a slave therefore export different names for what they
//! count (`rowcast_log_transactions_total`: appended to the change log;
//! `rowcast_applied_transactions_total`: committed on the replica), not one
//! name told apart by the `role` label. Every series carries
//! `role="master"|"slave"`; a slave's also carry `slave="<name>"`.
//!
//! A master also exports one series per slave, labelled `slave="<name>"`
//! (`rowcast_slave_lag_seconds`, `rowcast_slave_stalled`,
//! `rowcast_slave_failed`, ...): the server refreshes them every few
//! seconds from the same computation as `rowcast status`, so the two
//! always agree.
//!
//! [`exported_names`] lists every name; the dashboard and alert rules in
//! `docker/` are checked against it (tests/dashboards.rs).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Which processes export a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Roles {
    Both,
    Master,
    Slave,
}

impl Roles {
    fn includes(self, role: &str) -> bool {
        match self {
            Roles::Both => true,
            Roles::Master => role == "master",
            Roles::Slave => role == "slave",
        }
    }
}

/// One named value.
pub struct Metric {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: &'static str,
    roles: Roles,
    value: AtomicU64,
}

impl Metric {
    const fn new(
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        roles: Roles,
    ) -> Metric {
        Metric {
            name,
            help,
            kind,
            roles,
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
    // Both roles.
    pub errors: Metric,
    pub reconnects: Metric,
    pub snapshot_rows: Metric,
    /// 1 while `/readyz` answers 200 (set when metrics are rendered).
    pub ready: Metric,
    // A master.
    pub transactions: Metric,
    pub rows: Metric,
    pub bytes: Metric,
    pub last_seq: Metric,
    pub log_size_bytes: Metric,
    pub log_retention_limit_bytes: Metric,
    pub behind_primary_seconds: Metric,
    pub source_up: Metric,
    pub slaves_connected: Metric,
    // A slave.
    pub applied_transactions: Metric,
    pub applied_rows: Metric,
    pub applied_seq: Metric,
    pub lag_seconds: Metric,
    /// Per-slave series of a master (see the module doc).
    slaves: Mutex<Vec<SlaveGauges>>,
    /// A slave's own name, as a label on its series.
    slave_name: OnceLock<String>,
    served: AtomicBool,
}

/// One slave's values as the master last computed them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlaveGauges {
    pub name: String,
    pub lag_seconds: u64,
    pub lag_transactions: u64,
    pub stalled: bool,
    pub connected: bool,
    /// Stopped for good on an error (`failed` in status).
    pub failed: bool,
    /// Its `--delay`, which its lag includes.
    pub delay_seconds: u64,
    /// Seeding progress: rows and bytes copied, their estimates, and the
    /// seconds to go (0 when not seeding or not known yet).
    pub snapshot_rows: u64,
    pub snapshot_estimated_rows: u64,
    pub snapshot_bytes: u64,
    pub snapshot_estimated_bytes: u64,
    pub snapshot_eta_seconds: u64,
}

type Family = (&'static str, &'static str, fn(&SlaveGauges) -> u64);

/// The master's per-slave series (all gauges).
const SLAVE_FAMILIES: [Family; 11] = [
    ("rowcast_slave_lag_seconds", "Seconds since the primary committed the oldest transaction this slave has not applied (0: nothing pending; includes its --delay).", |s| s.lag_seconds),
    ("rowcast_slave_lag_transactions", "Change-log records this slave has not applied.", |s| s.lag_transactions),
    ("rowcast_slave_delay_seconds", "This slave's --delay: the part of its lag it waits on purpose.", |s| s.delay_seconds),
    ("rowcast_slave_stalled", "1 while this slave has work pending but has not advanced for --stall-after.", |s| u64::from(s.stalled)),
    ("rowcast_slave_connected", "1 while this slave is connected (or reading the JetStream stream).", |s| u64::from(s.connected)),
    ("rowcast_slave_failed", "1 once this slave stopped on an error it cannot retry (see `rowcast status` for it).", |s| u64::from(s.failed)),
    ("rowcast_slave_snapshot_rows", "Rows this slave's seed has copied.", |s| s.snapshot_rows),
    ("rowcast_slave_snapshot_estimated_rows", "Rows this slave's seed is estimated to copy (table statistics).", |s| s.snapshot_estimated_rows),
    ("rowcast_slave_snapshot_bytes", "Bytes of rows this slave's seed has copied.", |s| s.snapshot_bytes),
    ("rowcast_slave_snapshot_estimated_bytes", "Bytes this slave's seed is estimated to copy (table statistics).", |s| s.snapshot_estimated_bytes),
    ("rowcast_slave_snapshot_eta_seconds", "Seconds this slave's seed needs yet at its rate so far (0: not seeding, or not known yet).", |s| s.snapshot_eta_seconds),
];

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        use Roles::*;
        Arc::new(Metrics {
            errors: Metric::new("rowcast_errors_total", "Errors that ended a connection or a run.", "counter", Both),
            reconnects: Metric::new("rowcast_reconnects_total", "Reconnections to the primary (master) or to the master or its log (slave).", "counter", Both),
            snapshot_rows: Metric::new("rowcast_snapshot_rows_total", "Rows copied by seeds and snapshots (sent by a master, loaded by a slave).", "counter", Both),
            ready: Metric::new("rowcast_ready", "1 while /readyz answers 200: a master reads its primary, a slave streams within --max-lag.", "gauge", Both),
            transactions: Metric::new("rowcast_log_transactions_total", "Source transactions appended to the change log.", "counter", Master),
            rows: Metric::new("rowcast_log_rows_total", "Row changes appended to the change log.", "counter", Master),
            bytes: Metric::new("rowcast_log_written_bytes_total", "Bytes appended to the change log.", "counter", Master),
            last_seq: Metric::new("rowcast_log_last_sequence", "Sequence number of the newest record in the change log.", "gauge", Master),
            log_size_bytes: Metric::new("rowcast_log_size_bytes", "Size of the change log now (segment files, or the JetStream stream).", "gauge", Master),
            log_retention_limit_bytes: Metric::new("rowcast_log_retention_limit_bytes", "--retain-mb in bytes: retention drops old segments past it, except what a slave still needs (0: JetStream, whose own limits apply).", "gauge", Master),
            behind_primary_seconds: Metric::new("rowcast_master_behind_primary_seconds", "Seconds the master's change log is behind its primary (0: it has read the primary's whole binlog).", "gauge", Master),
            source_up: Metric::new("rowcast_master_source_up", "1 while the master's binlog reader streams from its primary (or reads its --binlog-dir).", "gauge", Master),
            slaves_connected: Metric::new("rowcast_slaves_connected", "Slaves connected to this master.", "gauge", Master),
            applied_transactions: Metric::new("rowcast_applied_transactions_total", "Source transactions committed on the replica.", "counter", Slave),
            applied_rows: Metric::new("rowcast_applied_rows_total", "Row changes committed on the replica.", "counter", Slave),
            applied_seq: Metric::new("rowcast_applied_sequence", "Change-log sequence number of the newest transaction applied.", "gauge", Slave),
            lag_seconds: Metric::new("rowcast_lag_seconds", "Seconds since the primary committed the oldest transaction this slave received and has not applied (0: nothing pending; includes --delay).", "gauge", Slave),
            slaves: Mutex::new(Vec::new()),
            slave_name: OnceLock::new(),
            served: AtomicBool::new(false),
        })
    }

    /// Whether anyone can read these (`--metrics` was given).
    pub fn is_served(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_served(&self) {
        self.served.store(true, Ordering::Relaxed);
    }

    /// A slave's name, put on its series as `slave="<name>"`.
    pub fn set_slave_name(&self, name: &str) {
        let _ = self.slave_name.set(name.to_string());
    }

    /// Replaces the per-slave series.
    pub fn set_slaves(&self, slaves: Vec<SlaveGauges>) {
        *self.slaves.lock().unwrap() = slaves;
    }

    fn all(&self) -> [&Metric; 17] {
        [
            &self.errors,
            &self.reconnects,
            &self.snapshot_rows,
            &self.ready,
            &self.transactions,
            &self.rows,
            &self.bytes,
            &self.last_seq,
            &self.log_size_bytes,
            &self.log_retention_limit_bytes,
            &self.behind_primary_seconds,
            &self.source_up,
            &self.slaves_connected,
            &self.applied_transactions,
            &self.applied_rows,
            &self.applied_seq,
            &self.lag_seconds,
        ]
    }

    /// The Prometheus text exposition of what `role` exports.
    pub fn render(&self, role: &str) -> String {
        let mut out = String::new();
        let labels = match self.slave_name.get() {
            Some(name) if role == "slave" => format!("role=\"{role}\",slave=\"{}\"", label(name)),
            _ => format!("role=\"{role}\""),
        };
        for m in self.all().into_iter().filter(|m| m.roles.includes(role)) {
            let _ = writeln!(out, "# HELP {} {}", m.name, m.help);
            let _ = writeln!(out, "# TYPE {} {}", m.name, m.kind);
            let _ = writeln!(out, "{}{{{labels}}} {}", m.name, m.get());
        }
        let slaves = self.slaves.lock().unwrap();
        if slaves.is_empty() {
            return out;
        }
        for (name, help, value) in SLAVE_FAMILIES {
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

/// Every metric name a master or a slave can export, per-slave series
/// included: what dashboards and alert rules may use.
pub fn exported_names() -> Vec<&'static str> {
    let m = Metrics::new();
    let mut names: Vec<&'static str> = m.all().iter().map(|m| m.name).collect();
    names.extend(SLAVE_FAMILIES.iter().map(|f| f.0));
    names
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
            failed: false,
            delay_seconds: 0,
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
            text.contains("rowcast_slave_failed{role=\"master\",slave=\"east \\\"1\\\"\"} 0"),
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

    /// The names of the series rendered (not comments).
    fn rendered_names(text: &str) -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn each_role_exports_its_own_names_and_the_list_has_them_all() {
        let m = Metrics::new();
        m.set_slave_name("s1");
        m.set_slaves(vec![SlaveGauges {
            name: "s1".into(),
            ..SlaveGauges::default()
        }]);
        let master = rendered_names(&m.render("master"));
        m.set_slaves(Vec::new());
        let slave_text = m.render("slave");
        let slave = rendered_names(&slave_text);
        assert!(master.contains(&"rowcast_log_transactions_total".to_string()));
        assert!(!master.contains(&"rowcast_applied_transactions_total".to_string()));
        assert!(slave.contains(&"rowcast_applied_transactions_total".to_string()));
        assert!(!slave.contains(&"rowcast_log_transactions_total".to_string()));
        assert!(
            slave_text.contains("rowcast_lag_seconds{role=\"slave\",slave=\"s1\"} 0"),
            "{slave_text}"
        );
        let mut rendered: Vec<String> = master.into_iter().chain(slave).collect();
        rendered.sort();
        rendered.dedup();
        let mut listed: Vec<String> = exported_names().iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(rendered, listed);
        // Conventions: counters and only counters end in _total.
        for metric in Metrics::new().all() {
            assert_eq!(
                metric.kind == "counter",
                metric.name.ends_with("_total"),
                "{}",
                metric.name
            );
            assert!(metric.name.starts_with("rowcast_"), "{}", metric.name);
        }
    }
}
