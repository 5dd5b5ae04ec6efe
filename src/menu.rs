//! The interactive mode of the CLI, for people who would rather answer
//! questions than write flags: `rowcast master` or `rowcast slave` on a
//! terminal without the required options asks for them, starts the
//! process in the background, and offers a menu. Writes made from the
//! master's menu go to the primary as SQL and reach the slaves through
//! the binlog like any other write. Part of the CLI output layer: it
//! prints.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use tokio::sync::watch;

use rowcast::master::{self, MasterConfig};
use rowcast::slave::{self, SlaveConfig};
use rowcast::source::filter::Filter;
use rowcast::source::Source;

/// Reads one answer; `None` at end of input (Ctrl-D).
async fn ask(prompt: &str, default: &str) -> Option<String> {
    if default.is_empty() {
        print!("{prompt}: ");
    } else {
        print!("{prompt} [{default}]: ");
    }
    let _ = std::io::stdout().flush();
    let line = tokio::task::spawn_blocking(|| {
        let mut s = String::new();
        match std::io::stdin().lock().read_line(&mut s) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(s),
        }
    })
    .await
    .ok()
    .flatten()?;
    let t = line.trim();
    Some(if t.is_empty() {
        default.to_string()
    } else {
        t.to_string()
    })
}

/// Asks for a server's address and credentials; returns its URL.
async fn ask_server(what: &str) -> Option<String> {
    println!("{what}:");
    let host = ask("  host", "127.0.0.1").await?;
    let port = ask("  port", "3306").await?;
    let user = ask("  user", "root").await?;
    let password = ask("  password", "").await?;
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let auth = if password.is_empty() {
        enc(&user)
    } else {
        format!("{}:{}", enc(&user), enc(&password))
    };
    Some(format!("mysql://{auth}@{host}:{port}"))
}

async fn wait_listening(addr: &str, task: &tokio::task::JoinHandle<Result<(), String>>) -> bool {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        if task.is_finished() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn run_sql(source: &Source, sql: &str) {
    match source.connect().await {
        Ok(mut conn) => match conn.query_iter(sql).await {
            Ok(mut result) => {
                let rows: Vec<mysql_async::Row> = result.collect().await.unwrap_or_default();
                for r in rows.iter().take(50) {
                    let cells: Vec<String> = r
                        .clone()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_sql(true).trim_matches('\'').to_string())
                        .collect();
                    println!("  {}", cells.join(" | "));
                }
                println!("done.");
            }
            Err(e) => println!("error: {e}"),
        },
        Err(e) => println!("error: {e}"),
    }
}

async fn show_slaves(listen: &str) {
    match rowcast::ops::status::fetch(listen, None, None).await {
        Ok(s) if s.slaves.is_empty() => println!("no slave has connected yet."),
        Ok(s) => {
            for sl in s.slaves {
                let at = sl
                    .applied_position
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into());
                println!(
                    "  {:<16} {:<9} at {}  lag {} txn / {} s{}",
                    sl.name,
                    sl.state,
                    at,
                    sl.lag_transactions,
                    sl.lag_seconds,
                    sl.last_error
                        .map(|e| format!("  error: {e}"))
                        .unwrap_or_default()
                );
            }
        }
        Err(e) => println!("error: {e}"),
    }
}

fn log_to_file(path: &PathBuf) {
    if let Ok(file) = std::fs::File::create(path) {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .try_init();
    }
}

pub async fn master() -> i32 {
    println!("rowcast master, interactive set-up (Ctrl-D quits)");
    let Some(url) = ask_server("The primary database").await else {
        return 1;
    };
    let Some(listen) = ask("Listen for slaves on", "127.0.0.1:9999").await else {
        return 1;
    };
    let Some(dir) = ask("Change log directory", "./rowcast-data").await else {
        return 1;
    };
    let source = match Source::from_url(&url) {
        Ok(s) => s,
        Err(e) => {
            println!("error: {e}");
            return 1;
        }
    };
    let data_dir = PathBuf::from(&dir);
    let _ = std::fs::create_dir_all(&data_dir);
    let log = data_dir.join("rowcast-master.log");
    log_to_file(&log);
    let config = MasterConfig {
        origin: rowcast::source::origin::Origin::Primary(source.clone()),
        start: None,
        listen: listen.clone(),
        server_id: master::default_server_id(&data_dir),
        data_dir,
        filter: Filter::default(),
        metrics: None,
        token: None,
        retention: Default::default(),
        segment_bytes: rowcast::log::segments::DEFAULT_SEGMENT_BYTES,
        part_bytes: rowcast::source::decode::DEFAULT_PART_BYTES,
        nats: None,
        nats_chunk_bytes: None,
        stall_after: rowcast::net::serve::DEFAULT_STALL_AFTER,
        tls: None,
        snapshot_threads: 2,
        seed_point: None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        master::run(config, stop_rx)
            .await
            .map_err(|e| e.to_string())
    });
    if !wait_listening(&listen, &task).await {
        let reason = match task.await {
            Ok(Err(e)) => e,
            _ => "it did not start listening".into(),
        };
        println!("error: the master could not start: {reason}");
        return 1;
    }
    println!(
        "master running: slaves connect to {listen}; log in {}",
        log.display()
    );
    loop {
        println!();
        println!(
            "  1) create a database   2) drop a database   3) create a table   4) drop a table"
        );
        println!(
            "  5) insert a row        6) update rows       7) delete rows      8) show slaves"
        );
        println!("  9) run SQL             0) quit");
        let Some(choice) = ask(">", "").await else {
            break;
        };
        let sql = match choice.as_str() {
            "1" => ask("Database name", "")
                .await
                .map(|d| format!("CREATE DATABASE `{d}`")),
            "2" => ask("Database name", "")
                .await
                .map(|d| format!("DROP DATABASE `{d}`")),
            "3" => {
                let Some(t) = ask("Table (db.table)", "").await else {
                    break;
                };
                ask("Columns, e.g. id INT PRIMARY KEY, name VARCHAR(50)", "")
                    .await
                    .map(|c| format!("CREATE TABLE {t} ({c})"))
            }
            "4" => ask("Table (db.table)", "")
                .await
                .map(|t| format!("DROP TABLE {t}")),
            "5" => {
                let Some(t) = ask("Table (db.table)", "").await else {
                    break;
                };
                ask("Values, e.g. 1, 'ann'", "")
                    .await
                    .map(|v| format!("INSERT INTO {t} VALUES ({v})"))
            }
            "6" => {
                let Some(t) = ask("Table (db.table)", "").await else {
                    break;
                };
                let Some(set) = ask("Set, e.g. name = 'bob'", "").await else {
                    break;
                };
                ask("Where, e.g. id = 1", "")
                    .await
                    .map(|w| format!("UPDATE {t} SET {set} WHERE {w}"))
            }
            "7" => {
                let Some(t) = ask("Table (db.table)", "").await else {
                    break;
                };
                ask("Where, e.g. id = 1", "")
                    .await
                    .map(|w| format!("DELETE FROM {t} WHERE {w}"))
            }
            "8" => {
                show_slaves(&listen).await;
                continue;
            }
            "9" => ask("SQL", "").await,
            "0" | "q" | "quit" => break,
            other => {
                println!("unknown choice `{other}`");
                continue;
            }
        };
        match sql {
            Some(sql) => run_sql(&source, &sql).await,
            None => break,
        }
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    println!("bye.");
    0
}

pub async fn slave() -> i32 {
    println!("rowcast slave, interactive set-up (Ctrl-D quits)");
    let Some(master_addr) = ask("Master address", "127.0.0.1:9999").await else {
        return 1;
    };
    let Some(url) = ask_server("The local (replica) database").await else {
        return 1;
    };
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "replica".into());
    let Some(name) = ask("Slave name", host.trim()).await else {
        return 1;
    };
    let target = match Source::from_url(&url) {
        Ok(s) => s,
        Err(e) => {
            println!("error: {e}");
            return 1;
        }
    };
    let log = PathBuf::from(format!("rowcast-slave-{name}.log"));
    log_to_file(&log);
    let config = SlaveConfig {
        master: master_addr.clone(),
        target: target.clone(),
        name: name.clone(),
        master_timeout: Duration::from_secs(15),
        resnapshot: false,
        metrics: None,
        token: None,
        read_only: true,
        tls: None,
        nats: None,
        resync: Vec::new(),
        snapshot_threads: 2,
        delay: Duration::ZERO,
        rewrite_db: Vec::new(),
        skip_at: None,
        max_lag: Duration::from_secs(60),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let task =
        tokio::spawn(async move { slave::run(config, stop_rx).await.map_err(|e| e.to_string()) });
    println!(
        "slave `{name}` running against {}; log in {}",
        target.endpoint(),
        log.display()
    );
    let mut primary: Option<Source> = None;
    loop {
        println!();
        println!("  1) list databases   2) list tables   3) show rows of a table");
        println!("  4) verify replication against the primary   5) show status   0) quit");
        let Some(choice) = ask(">", "").await else {
            break;
        };
        if task.is_finished() {
            println!("the slave has stopped; see {}", log.display());
        }
        let what = match choice.as_str() {
            "1" => None,
            "2" => match ask("Database", "").await {
                Some(d) => Some(d),
                None => break,
            },
            "3" => match ask("Table (db.table)", "").await {
                Some(t) => Some(t),
                None => break,
            },
            "4" => {
                if primary.is_none() {
                    let Some(url) = ask_server("The primary database").await else {
                        break;
                    };
                    match Source::from_url(&url) {
                        Ok(s) => primary = Some(s),
                        Err(e) => {
                            println!("error: {e}");
                            continue;
                        }
                    }
                }
                let opts = rowcast::ops::checksum::ChecksumOptions {
                    source: primary.clone().expect("set above"),
                    targets: vec![target.clone()],
                    tables: Vec::new(),
                    chunk_time: Duration::from_millis(200),
                    wait: Duration::from_secs(120),
                    progress: None,
                    rewrite_db: Vec::new(),
                };
                match rowcast::ops::checksum::run(&opts).await {
                    Ok(r) => {
                        for t in r.targets.iter().flat_map(|t| &t.tables) {
                            println!(
                                "  {}.{}: {} rows, {}",
                                t.database,
                                t.table,
                                t.rows,
                                t.status()
                            );
                        }
                        println!(
                            "{}",
                            if r.all_equal() {
                                "replica equals the primary."
                            } else {
                                "DIFFERENCES FOUND"
                            }
                        );
                    }
                    Err(e) => println!("error: {e}"),
                }
                continue;
            }
            "5" => {
                show_slaves(&master_addr).await;
                continue;
            }
            "0" | "q" | "quit" => break,
            other => {
                println!("unknown choice `{other}`");
                continue;
            }
        };
        match rowcast::ops::show::show(&target, what.as_deref(), 50, None).await {
            Ok(shown) => {
                for f in &shown.freshness {
                    println!("{f}");
                }
                println!("  {}", shown.header.join(" | "));
                for r in &shown.rows {
                    println!("  {}", r.join(" | "));
                }
            }
            Err(e) => println!("error: {e}"),
        }
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    println!("bye.");
    0
}
