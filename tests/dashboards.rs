//! The Grafana dashboard and the Prometheus alerts in `docker/` use only
//! metric names rowcast exports (`rowcast::ops::metrics::exported_names`),
//! so a rename cannot silently blank a panel or mute an alert; and every
//! dashboard query is valid PromQL (checked by `promtool check rules`, as
//! the alerts themselves are by scripts/test).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn docker(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docker")
        .join(path)
}

/// Every `rowcast_*` name in `text` (a name runs on over lowercase
/// letters, digits and underscores).
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("rowcast_") {
        let start = i + at;
        // Part of a longer word (`xrowcast_`) is not a name.
        let starts_word = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_')
        };
        let mut end = start + "rowcast_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if starts_word {
            names.insert(text[start..end].to_string());
        }
        i = end;
    }
    names
}

/// The dashboard's PromQL: every target's `expr` and every query
/// variable's query.
fn dashboard_queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| dashboard_queries(i, out)),
        _ => {}
    }
}

fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(docker("grafana/rowcast.json")).unwrap();
    serde_json::from_str(&text).expect("docker/grafana/rowcast.json is JSON")
}

fn assert_exported(file: &str, used: &BTreeSet<String>) {
    let exported: BTreeSet<String> = rowcast::ops::metrics::exported_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "{file} uses metrics rowcast does not export: {unknown:?}; exported: {exported:?}"
    );
}

#[test]
fn the_dashboard_uses_only_exported_metrics_and_shows_what_operators_need() {
    let d = dashboard();
    // Every string, titles and descriptions included: a name mentioned
    // anywhere must be real.
    let used = names_in(&d.to_string());
    assert_exported("docker/grafana/rowcast.json", &used);
    for needed in [
        "rowcast_slave_lag_seconds",
        "rowcast_applied_transactions_total",
        "rowcast_log_transactions_total",
        "rowcast_slave_snapshot_rows",
        "rowcast_slave_snapshot_estimated_rows",
        "rowcast_errors_total",
        "rowcast_reconnects_total",
    ] {
        assert!(
            used.contains(needed),
            "the dashboard has no panel on {needed}"
        );
    }
    let mut queries = Vec::new();
    dashboard_queries(&d, &mut queries);
    assert!(queries.len() >= 10, "{queries:?}");
}

#[test]
fn the_alerts_and_their_tests_use_only_exported_metrics() {
    for file in ["prometheus/alerts.yml", "prometheus/alerts_test.yml"] {
        let text = std::fs::read_to_string(docker(file)).unwrap();
        let used = names_in(&text);
        assert!(!used.is_empty(), "{file} names no rowcast metric");
        assert_exported(file, &used);
    }
    let alerts = std::fs::read_to_string(docker("prometheus/alerts.yml")).unwrap();
    for name in [
        "rowcast_slave_stalled",
        "rowcast_slave_lag_seconds",
        "rowcast_slave_failed",
        "rowcast_master_behind_primary_seconds",
        "rowcast_log_retention_limit_bytes",
    ] {
        assert!(alerts.contains(name), "no alert on {name}");
    }
}

#[test]
fn names_are_found_whole_and_only_as_words() {
    let found = names_in("rate(rowcast_log_rows_total[5m]) / xrowcast_no{a=\"rowcast_x1\"}");
    let found: Vec<&str> = found.iter().map(String::as_str).collect();
    assert_eq!(found, ["rowcast_log_rows_total", "rowcast_x1"]);
}

/// promtool, which scripts/test installs (Debian's `prometheus`).
fn promtool() -> String {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("promtool");
        if p.exists() {
            return p.to_string_lossy().into_owned();
        }
    }
    panic!("promtool not found: install Debian's `prometheus` package (scripts/test does)");
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    let mut queries = Vec::new();
    dashboard_queries(&dashboard(), &mut queries);
    // As recording rules, Grafana's variables filled in as Grafana would.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        let q = q.replace("$__rate_interval", "1m").replace("$slave", ".*");
        // label_values(...) is Grafana's, not PromQL: check its metric.
        let q = match q.strip_prefix("label_values(") {
            Some(rest) => rest.split(',').next().unwrap().trim().to_string(),
            None => q,
        };
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(&q).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard_rules.yml");
    std::fs::write(&file, &rules).unwrap();
    let out = Command::new(promtool())
        .arg("check")
        .arg("rules")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "a dashboard query is not PromQL:\n{}{}\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
