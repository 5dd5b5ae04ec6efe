//! The `rowcast` command line: parses flags into validated configs, runs
//! one command, and maps its outcome to an exit code. All user-facing
//! output that is not a log line is printed here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::io::IsTerminal;

use clap::{Parser, Subcommand};

mod menu;
use tokio::sync::watch;

use rowcast::log::jetstream::NatsUrl;
use rowcast::master::{self, MasterConfig};
use rowcast::ops::checksum;
use rowcast::slave::{self, SlaveConfig};
use rowcast::source::binlog_dir::{self, BinlogDir};
use rowcast::source::filter::Filter;
use rowcast::source::origin::Origin;
use rowcast::source::Source;

#[derive(Parser)]
#[command(
    name = "rowcast",
    version,
    about = "Live replicas of a MySQL/MariaDB primary, from its row-based binlog"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// A TOML file with `[master]`, `[slave]`, ... sections holding the same
    /// settings as the flags (or $ROWCAST_CONFIG). Flags win.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Read the primary's binlog into a change log and serve it to slaves.
    Master {
        /// The primary, as mysql://USER:PASSWORD@HOST:PORT (or $ROWCAST_SOURCE).
        #[arg(
            long,
            env = "ROWCAST_SOURCE",
            hide_env_values = true,
            required_unless_present = "binlog_dir"
        )]
        source: Option<String>,
        /// Instead of a primary: replay the archived binlog files in this
        /// directory (in the order of its *.index file, else by name), then
        /// wait for more. Slaves start at the first file without a snapshot.
        #[arg(long, value_name = "DIR")]
        binlog_dir: Option<PathBuf>,
        /// With --binlog-dir: start a new change log at this event
        /// (FILE:POSITION) instead of the first file's first event.
        #[arg(long, value_name = "FILE:POS", requires = "binlog_dir")]
        start: Option<String>,
        /// Read the primary's password from this file instead of the URL.
        #[arg(long, value_name = "PATH")]
        source_password_file: Option<PathBuf>,
        /// Address slaves connect to.
        #[arg(long, default_value = "127.0.0.1:9999")]
        listen: String,
        /// Directory of the change log.
        #[arg(long)]
        data_dir: PathBuf,
        /// Server id of the replication connection (default: derived from
        /// the data dir, above 2^31 so it does not clash with real replicas).
        #[arg(long)]
        server_id: Option<u32>,
        /// Replicate only these: `db` or `db.table`, * and ? as wildcards
        /// (repeatable). Default: everything but the server's own schemas.
        #[arg(long, value_name = "GLOB")]
        include: Vec<String>,
        /// Never replicate these: `db` or `db.table` globs (repeatable).
        #[arg(long, value_name = "GLOB")]
        exclude: Vec<String>,
        /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9187).
        #[arg(long, value_name = "HOST:PORT")]
        metrics: Option<String>,
        /// File holding a shared secret that slaves must prove they know.
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
        /// Keep at most this many MiB of change log (whole segments are
        /// dropped, never one a connected slave still needs).
        #[arg(long, default_value_t = 10240)]
        retain_mb: u64,
        /// Drop change-log segments older than this many hours.
        #[arg(long, default_value_t = 168)]
        retain_hours: u64,
        /// Size of a change-log segment in bytes.
        #[arg(long, default_value_t = 64 << 20, hide = true)]
        segment_bytes: u64,
        /// Ship transactions larger than this many KiB of row events in
        /// parts, so memory stays bounded (the slave still commits them whole).
        #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
        part_kb: u64,
        /// Keep the change log on NATS JetStream (nats://HOST:PORT[/STREAM])
        /// instead of segment files in --data-dir; slaves then read the
        /// stream themselves and this master only seeds them.
        #[arg(long, value_name = "URL")]
        log: Option<String>,
        /// Largest NATS message body (default: the server's max_payload).
        #[arg(long, hide = true)]
        nats_chunk_bytes: Option<usize>,
        /// Serve slaves over TLS with this certificate (PEM; with --tls-key).
        #[arg(long, value_name = "PEM", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key of --tls-cert (PEM).
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Require slaves to present a certificate signed by this CA (mutual TLS).
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        tls_client_ca: Option<PathBuf>,
        /// Show a slave as `stalled` (status and metrics) when it has work
        /// pending but its applied position has not moved for this long
        /// (seconds, or with an s/m/h suffix).
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
        stall_after: Duration,
        /// Connections a new slave's seed reads the primary with (the
        /// slave loads with as many).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
        snapshot_threads: u32,
        /// How a seed chunk's read view is tied to a binlog position:
        /// `status` (MariaDB's binlog_snapshot_position) or `lock` (a brief
        /// LOCK TABLES ... READ, as on MySQL). Default: by server.
        #[arg(long, hide = true, value_parser = ["status", "lock"])]
        seed_point: Option<String>,
    },
    /// Apply a master's changes to a local database.
    Slave {
        /// The master's --listen address.
        #[arg(long, default_value = "127.0.0.1:9999")]
        master: String,
        /// The replica database, as mysql://USER:PASSWORD@HOST:PORT (or $ROWCAST_TARGET).
        #[arg(long, env = "ROWCAST_TARGET", hide_env_values = true)]
        target: String,
        /// Read the replica's password from this file instead of the URL.
        #[arg(long, value_name = "PATH")]
        target_password_file: Option<PathBuf>,
        /// This slave's name; its checkpoint is stored under it.
        #[arg(long)]
        name: String,
        /// Seconds of silence from the master before reconnecting.
        #[arg(long, default_value_t = 15)]
        master_timeout: u64,
        /// Drop the replicated databases on the target and seed them again
        /// from a new snapshot.
        #[arg(long)]
        resnapshot: bool,
        /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9188).
        #[arg(long, value_name = "HOST:PORT")]
        metrics: Option<String>,
        /// File holding the master's shared secret.
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
        /// Leave the target writable (by default the slave sets its
        /// `read_only`, so only privileged users can write to the replica).
        #[arg(long)]
        no_read_only: bool,
        /// Read the change log from NATS JetStream (nats://HOST:PORT[/STREAM]),
        /// as the master's --log; the master is then used only for seeding.
        #[arg(long, value_name = "URL")]
        log: Option<String>,
        /// Copy this table again from the primary (`DB.TABLE`, repeatable):
        /// for a table that diverged, or one that entered the master's
        /// filter later. The other tables keep streaming meanwhile. Each
        /// start with it copies again: drop it once the copy is done.
        #[arg(long, value_name = "DB.TABLE", value_parser = parse_table_name)]
        resync: Vec<(String, String)>,
        /// Connections that load a seed's chunks into the replica.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
        snapshot_threads: u32,
        /// Delayed replica: apply each transaction no earlier than its
        /// primary commit time plus this (`90s`, `30m`, `1h`), as
        /// MASTER_DELAY does.
        #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
        delay: Duration,
        /// Keep the primary's database FROM under the name TO on the
        /// replica (`FROM=TO`, repeatable); rows and DDL are rewritten.
        #[arg(long, value_name = "FROM=TO", value_parser = parse_rewrite)]
        rewrite_db: Vec<(String, String)>,
        /// Skip the one transaction at this source position (as the
        /// slave's error named it), once, instead of applying it.
        #[arg(long, value_name = "POSITION")]
        skip_at: Option<String>,
        /// `/readyz` (on --metrics) answers 503 once the lag is over this
        /// (`30s`, `5m`); with --delay, the lag minus the delay counts.
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
        max_lag: Duration,
        #[command(flatten)]
        tls: ClientTlsArgs,
    },
    /// Show a master's position, its change log and every slave's state and lag.
    Status {
        /// The master's --listen address.
        #[arg(long, default_value = "127.0.0.1:9999")]
        master: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Keep showing it, refreshed every --interval, until Ctrl-C (on a
        /// terminal the screen is redrawn; otherwise successive snapshots
        /// are printed, a blank line between them).
        #[arg(long)]
        watch: bool,
        /// How often --watch refreshes (`2s`, `1m`).
        #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration, requires = "watch")]
        interval: Duration,
        /// File holding the master's shared secret.
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
        #[command(flatten)]
        tls: ClientTlsArgs,
    },
    /// Look at a replica's data: databases, tables of DB, or rows of DB.TABLE.
    Show {
        /// The replica (or $ROWCAST_TARGET).
        #[arg(long, env = "ROWCAST_TARGET", hide_env_values = true)]
        target: String,
        /// `DB` or `DB.TABLE`.
        what: Option<String>,
        /// Rows to show at most.
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// A SQL condition on the rows, e.g. "id > 10".
        #[arg(long = "where", value_name = "SQL")]
        where_: Option<String>,
    },
    /// Prove replicas equal their primary: chunk checksums compared at the
    /// same source position, while writes go on. Exit 0: equal, 1: differs,
    /// 2: error.
    Checksum {
        /// The primary (or $ROWCAST_SOURCE). Needs CREATE, INSERT on
        /// rowcast_checksum.* besides SELECT.
        #[arg(long, env = "ROWCAST_SOURCE", hide_env_values = true)]
        source: String,
        /// A replica written by a rowcast slave (repeatable).
        #[arg(long, required = true)]
        target: Vec<String>,
        /// Only these tables: `db` or `db.table` globs (repeatable).
        #[arg(long, value_name = "GLOB")]
        tables: Vec<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Target duration of each chunk's checksum query, in ms.
        #[arg(long, default_value_t = 200)]
        chunk_ms: u64,
        /// Seconds to wait for a replica to apply the run.
        #[arg(long, default_value_t = 300)]
        wait: u64,
        /// The replicas keep the primary's database FROM as TO
        /// (`FROM=TO`, repeatable). By default each replica's slave's
        /// stored `--rewrite-db` rules are used; this overrides them.
        #[arg(long, value_name = "FROM=TO", value_parser = parse_rewrite)]
        rewrite_db: Vec<(String, String)>,
    },
}

/// TLS options of a client of the master (`slave`, `status`).
#[derive(clap::Args)]
struct ClientTlsArgs {
    /// Connect to the master over TLS, trusting this CA (PEM).
    #[arg(long, value_name = "PEM")]
    tls_ca: Option<PathBuf>,
    /// Client certificate for mutual TLS (PEM; with --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key", requires = "tls_ca")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl ClientTlsArgs {
    fn build(&self) -> anyhow::Result<Option<rowcast::net::tls::ClientTls>> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let client = self.tls_cert.as_deref().zip(self.tls_key.as_deref());
        Ok(Some(rowcast::net::tls::ClientTls {
            connector: rowcast::net::tls::connector(ca, client)?,
        }))
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// A channel that flips to `true` on SIGINT or SIGTERM.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

/// Prints rows as an aligned table.
fn print_table(header: &[String], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count().min(60));
            }
        }
    }
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let c: String = c.chars().take(60).collect();
                format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0))
            })
            .collect();
        println!("  {}", parts.join("  ").trim_end());
    };
    line(header);
    line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
    for r in rows {
        line(r);
    }
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC` (the civil
/// calendar from a day count, as in Howard Hinnant's `civil_from_days`).
fn utc_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `90`, `90s`, `5m` or `1h`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: write seconds, e.g. 60 or 60s, 5m, 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("`{s}`: the unit must be s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

fn print_status(s: &rowcast::net::wire::MasterStatus) {
    let pos = |p: &Option<rowcast::source::position::SourcePosition>| {
        p.as_ref()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "-".into())
    };
    println!("primary      {} at {}", s.primary, pos(&s.primary_position));
    println!(
        "master log   {} (seq {}..{}, {} segment(s), {} bytes) in {}",
        pos(&s.log_position),
        s.log_first_seq,
        s.log_last_seq,
        s.log_segments,
        s.log_bytes,
        s.log_dir
    );
    let behind = match (&s.primary_position, &s.log_position) {
        (Some(p), Some(l)) if p.file == l.file => {
            format!("{} bytes of binlog", p.offset.saturating_sub(l.offset))
        }
        (Some(p), Some(l)) if p.is_after(l) => "more than one binlog file".into(),
        _ => "0 bytes of binlog".into(),
    };
    println!("master lag   {behind} behind the primary");
    println!();
    if s.slaves.is_empty() {
        println!("no slave has connected since the master started");
        return;
    }
    let header: Vec<String> = [
        "SLAVE",
        "ADDRESS",
        "STATE",
        "APPLIED POSITION",
        "LAG TXNS",
        "LAG S",
        "SNAPSHOT",
        "LAST ERROR",
    ]
    .iter()
    .map(|h| h.to_string())
    .collect();
    let rows: Vec<Vec<String>> = s
        .slaves
        .iter()
        .map(|sl| {
            vec![
                sl.name.clone(),
                sl.addr.clone(),
                sl.state.clone(),
                pos(&sl.applied_position),
                sl.lag_transactions.to_string(),
                sl.lag_seconds.to_string(),
                if sl.snapshot_estimated_rows > 0 || sl.snapshot_rows > 0 {
                    let pct = (sl.snapshot_rows * 100)
                        .checked_div(sl.snapshot_estimated_rows)
                        .unwrap_or(0)
                        .min(100);
                    let mut s = format!(
                        "{}/{} rows ({pct}%), {}/{} MiB",
                        sl.snapshot_rows,
                        sl.snapshot_estimated_rows,
                        sl.snapshot_bytes >> 20,
                        sl.snapshot_estimated_bytes >> 20
                    );
                    if let Some(eta) = sl.snapshot_eta_seconds.filter(|&e| e > 0) {
                        s.push_str(&format!(", ETA {eta}s"));
                    }
                    s
                } else {
                    "-".into()
                },
                sl.last_error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(&header, &rows);
    // What operators set on a slave, below the table: rare, and long.
    for sl in &s.slaves {
        let set = &sl.settings;
        if set.delay_seconds > 0 {
            println!(
                "{}: delayed replica, applies each transaction {}s after its primary commit (lag includes it)",
                sl.name, set.delay_seconds
            );
        }
        for (from, to) in &set.rewrite_db {
            println!("{}: database {from} is kept as {to}", sl.name);
        }
        for k in &set.skipped {
            println!(
                "{}: skipped the transaction at {} (--skip-at, {}): {}",
                sl.name,
                k.position,
                utc_time(k.at),
                k.reason
            );
        }
    }
    if s.slaves.iter().any(|sl| sl.state == "stalled") {
        println!();
        println!("stalled: work is pending but the slave has applied nothing for the master's --stall-after; check its process and its replica (locks, disk)");
    }
}

/// `status --watch`: the status again every `interval` until Ctrl-C. On a
/// terminal each one replaces the last (cursor home, clear screen: plain
/// ANSI); otherwise snapshots follow each other, a blank line between. A
/// master that cannot be reached shows as an error line and is asked
/// again: a watch outlives a master restart.
async fn watch_status(
    master: &str,
    token: Option<&[u8]>,
    tls: Option<&rowcast::net::tls::ClientTls>,
    json: bool,
    interval: Duration,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let tty = std::io::stdout().is_terminal();
    let interval = interval.max(Duration::from_secs(1));
    let mut first = true;
    loop {
        let status = rowcast::ops::status::fetch(master, token, tls).await;
        if tty {
            print!("\x1b[H\x1b[2J");
        } else if !first {
            println!();
        }
        first = false;
        if tty {
            println!(
                "rowcast status --master {master}, every {}s (Ctrl-C to stop)\n",
                interval.as_secs()
            );
        }
        match status {
            Ok(s) if json => println!("{}", serde_json::to_string_pretty(&s)?),
            Ok(s) => print_status(&s),
            Err(e) => println!("error: {e}"),
        }
        // A closed pipe ends the watch (`| head`).
        if std::io::stdout().flush().is_err() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

fn print_report(report: &checksum::Report) {
    println!(
        "checksum run {} (primary at {})",
        report.run_id, report.position
    );
    for t in &report.targets {
        println!();
        println!(
            "replica {} (slave `{}`), applied the run {:.1} s after the primary finished",
            t.target, t.slave, t.lag_seconds
        );
        let width = t
            .tables
            .iter()
            .map(|r| {
                r.database.len()
                    + r.table.len()
                    + 1
                    + if r.replica_database == r.database {
                        0
                    } else {
                        r.replica_database.len() + 6
                    }
            })
            .max()
            .unwrap_or(5)
            .max(5);
        println!(
            "  {:<width$}  {:>12}  {:>7}  STATUS",
            "TABLE", "ROWS", "CHUNKS"
        );
        for r in &t.tables {
            let name = if r.replica_database == r.database {
                format!("{}.{}", r.database, r.table)
            } else {
                format!("{}.{} (as {})", r.database, r.table, r.replica_database)
            };
            println!(
                "  {:<width$}  {:>12}  {:>7}  {}",
                name,
                r.rows,
                r.chunks,
                r.status()
            );
            for k in r.differing_keys.iter().take(20) {
                println!("  {:<width$}    key {k}", "");
            }
            if r.differing_keys.len() > 20 {
                println!(
                    "  {:<width$}    ... and {} more",
                    "",
                    r.differing_keys.len() - 20
                );
            }
        }
    }
    println!();
    println!(
        "{}",
        if report.all_equal() {
            "all tables equal"
        } else {
            "DIFFERENCES FOUND"
        }
    );
}

/// `FROM=TO` as its two database names.
fn parse_rewrite(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() && from != to => {
            Ok((from.to_string(), to.to_string()))
        }
        _ => Err(format!(
            "`{s}` is not FROM=TO with two different database names (for example shop=shop_copy)"
        )),
    }
}

/// `DB.TABLE` as its two names.
fn parse_table_name(s: &str) -> Result<(String, String), String> {
    match s.split_once('.') {
        Some((d, t)) if !d.is_empty() && !t.is_empty() && !t.contains('.') => {
            Ok((d.to_string(), t.to_string()))
        }
        _ => Err(format!("`{s}` is not DB.TABLE (for example shop.orders)")),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Master {
            source,
            binlog_dir,
            start,
            source_password_file,
            listen,
            data_dir,
            server_id,
            include,
            exclude,
            metrics,
            token_file,
            retain_mb,
            retain_hours,
            segment_bytes,
            part_kb,
            log,
            nats_chunk_bytes,
            tls_cert,
            tls_key,
            tls_client_ca,
            stall_after,
            snapshot_threads,
            seed_point,
        } => {
            let origin = match (source, binlog_dir) {
                (Some(source), None) => Origin::Primary(Source::from_url_and_password_file(
                    &source,
                    source_password_file.as_deref(),
                )?),
                // An exported $ROWCAST_SOURCE does not stand in the way of
                // --binlog-dir; a --source given with it does.
                (Some(source), Some(dir))
                    if std::env::var("ROWCAST_SOURCE").ok().as_ref() == Some(&source) =>
                {
                    tracing::warn!("$ROWCAST_SOURCE is ignored: --binlog-dir reads files instead of a primary");
                    Origin::BinlogDir(BinlogDir::new(dir))
                }
                (Some(_), Some(_)) => anyhow::bail!(
                    "--source and --binlog-dir cannot be used together: a master reads either a live primary or binlog files"
                ),
                (None, Some(dir)) => Origin::BinlogDir(BinlogDir::new(dir)),
                (None, None) => unreachable!("clap requires one"),
            };
            let start = start.as_deref().map(binlog_dir::parse_start).transpose()?;
            let filter = Filter::new(&include, &exclude)?;
            let server_id = server_id.unwrap_or_else(|| master::default_server_id(&data_dir));
            let config = MasterConfig {
                origin,
                start,
                listen,
                data_dir,
                server_id,
                filter,
                metrics,
                token: token_file
                    .as_deref()
                    .map(rowcast::net::auth::load_token)
                    .transpose()?,
                retention: rowcast::log::segments::Retention {
                    max_bytes: retain_mb.saturating_mul(1 << 20),
                    max_age: Duration::from_secs(retain_hours.saturating_mul(3600)),
                },
                segment_bytes,
                part_bytes: usize::try_from(part_kb.saturating_mul(1024)).unwrap_or(usize::MAX),
                nats: log.as_deref().map(NatsUrl::parse).transpose()?,
                nats_chunk_bytes,
                stall_after,
                snapshot_threads: snapshot_threads as usize,
                seed_point: seed_point.map(|m| match m.as_str() {
                    "lock" => rowcast::source::chunk_read::PointMethod::TableLock,
                    _ => rowcast::source::chunk_read::PointMethod::SnapshotStatus,
                }),
                tls: match (&tls_cert, &tls_key) {
                    (Some(c), Some(k)) => {
                        Some(rowcast::net::tls::acceptor(c, k, tls_client_ca.as_deref())?)
                    }
                    _ => None,
                },
            };
            master::run(config, shutdown_signal()).await?;
        }
        Command::Slave {
            master,
            target,
            target_password_file,
            name,
            master_timeout,
            resnapshot,
            metrics,
            token_file,
            no_read_only,
            log,
            resync,
            snapshot_threads,
            delay,
            rewrite_db,
            skip_at,
            max_lag,
            tls,
        } => {
            let target =
                Source::from_url_and_password_file(&target, target_password_file.as_deref())?;
            let config = SlaveConfig {
                master,
                target,
                name,
                master_timeout: Duration::from_secs(master_timeout.max(1)),
                resnapshot,
                metrics,
                token: token_file
                    .as_deref()
                    .map(rowcast::net::auth::load_token)
                    .transpose()?,
                read_only: !no_read_only,
                tls: tls.build()?,
                nats: log.as_deref().map(NatsUrl::parse).transpose()?,
                resync,
                snapshot_threads: snapshot_threads as usize,
                delay,
                rewrite_db,
                skip_at,
                max_lag,
            };
            slave::run(config, shutdown_signal()).await?;
        }
        Command::Status {
            master,
            json,
            watch,
            interval,
            token_file,
            tls,
        } => {
            let token = token_file
                .as_deref()
                .map(rowcast::net::auth::load_token)
                .transpose()?;
            let tls = tls.build()?;
            if watch {
                // `status --watch | head`: a closed pipe ends the process
                // quietly, as it does any Unix filter, instead of
                // println!'s panic.
                // SAFETY: called before any other thread writes to stdout;
                // SIG_DFL is a valid disposition for SIGPIPE.
                unsafe {
                    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                }
                watch_status(&master, token.as_deref(), tls.as_ref(), json, interval).await?;
                return Ok(ExitCode::SUCCESS);
            }
            let status =
                rowcast::ops::status::fetch(&master, token.as_deref(), tls.as_ref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
        }
        Command::Show {
            target,
            what,
            limit,
            where_,
        } => {
            let target = Source::from_url(&target)?;
            let shown =
                rowcast::ops::show::show(&target, what.as_deref(), limit, where_.as_deref())
                    .await?;
            for f in &shown.freshness {
                println!("{f}");
            }
            println!();
            print_table(&shown.header, &shown.rows);
            println!("({} row(s))", shown.rows.len());
        }
        Command::Checksum {
            source,
            target,
            tables,
            json,
            chunk_ms,
            wait,
            rewrite_db,
        } => {
            let opts = checksum::ChecksumOptions {
                source: Source::from_url(&source)?,
                targets: target
                    .iter()
                    .map(|t| Source::from_url(t))
                    .collect::<Result<_, _>>()?,
                tables,
                chunk_time: Duration::from_millis(chunk_ms.max(10)),
                wait: Duration::from_secs(wait),
                rewrite_db,
                // A one-line progress display on a terminal.
                progress: std::io::stderr().is_terminal().then(|| {
                    Box::new(|table: &str, chunks: u32, rows: u64| {
                        eprint!("\r\x1b[Kchecksumming {table}: {chunks} chunk(s), {rows} rows");
                    }) as Box<checksum::Progress>
                }),
            };
            let report = checksum::run(&opts).await;
            if opts.progress.is_some() {
                eprint!("\r\x1b[K");
            }
            let report = match report {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report);
            }
            return Ok(if report.all_equal() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match rowcast::ops::config::expand_args(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `rowcast master` / `rowcast slave` alone on a terminal: ask, then
    // offer a menu.
    if args.len() == 2 && std::io::stdin().is_terminal() {
        match args[1].to_str() {
            Some("master") if std::env::var_os("ROWCAST_SOURCE").is_none() => {
                return ExitCode::from(menu::master().await as u8)
            }
            Some("slave") if std::env::var_os("ROWCAST_TARGET").is_none() => {
                return ExitCode::from(menu::slave().await as u8)
            }
            _ => {}
        }
    }
    let cli = Cli::parse_from(args);
    init_logging(cli.log_format);
    // `checksum` reserves exit code 1 for "differs".
    let failure = match cli.command {
        Command::Checksum { .. } => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    };
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            failure
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn skip_times_print_in_the_civil_calendar() {
        assert_eq!(super::utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc_time(1_796_654_897), "2026-12-07 14:48:17 UTC");
        assert_eq!(super::utc_time(4_102_444_799), "2099-12-31 23:59:59 UTC");
    }
}
