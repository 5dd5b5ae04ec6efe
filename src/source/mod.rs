//! The primary: connecting to it, checking that its binlog can be
//! replicated, and opening a binlog stream at a position.
//!
//! Errors are classified where they arise: [`SourceError::is_retryable`]
//! is true for a lost or refused connection (the supervisor reconnects with
//! backoff) and false for anything a retry cannot fix (settings, grants,
//! credentials, a purged binlog), which stops the master with a message
//! naming the fix.

// The stages of reading the primary, each in a file of its own.
pub mod binlog_dir;
pub mod chunk_read;
pub mod compressed;
pub mod continuity;
pub mod decode;
pub mod filter;
pub mod gtid_set;
pub mod json_binary;
pub mod objects;
pub mod origin;
pub mod position;
pub mod row_image;
pub mod seed_plan;
pub mod snapshot;
pub mod statement_target;
pub mod status_vars;

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Opts, OptsBuilder};
use mysql_common::packets::{GnoInterval, Sid, Tag};

use crate::source::continuity::BinlogState;
use crate::source::gtid_set::GtidSet;
use crate::source::position::{Gtid, SourcePosition};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// MySQL/MariaDB error codes that decide how an error is handled.
const ER_ACCESS_DENIED: u16 = 1045;
const ER_DBACCESS_DENIED: u16 = 1044;
const ER_SPECIFIC_ACCESS_DENIED: u16 = 1227;
const ER_MASTER_FATAL_READING_BINLOG: u16 = 1236;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("invalid database URL: {0}; expected mysql://USER:PASSWORD@HOST:PORT")]
    Url(String),
    #[error("cannot read the password file {path}: {reason}")]
    PasswordFile { path: String, reason: String },
    #[error("cannot connect to {endpoint}: {reason}; check the host, port and that the server is running")]
    Unreachable { endpoint: String, reason: String },
    #[error("{endpoint} refused the login of user `{user}`: {reason}; check the user name and password in the URL")]
    AccessDenied {
        endpoint: String,
        user: String,
        reason: String,
    },
    #[error("primary {endpoint} is not set up for row-based replication: {setting} is {actual}, rowcast needs {expected}. Fix: {fix}")]
    Setting {
        endpoint: String,
        setting: &'static str,
        actual: String,
        expected: &'static str,
        fix: String,
    },
    #[error("user `{user}` on {endpoint} lacks the {grant} privilege. Fix: GRANT {grant} ON *.* TO '{user}'@'%'")]
    MissingGrant {
        endpoint: String,
        user: String,
        grant: &'static str,
    },
    #[error("the primary no longer has the binlog rowcast needs (position {position}): {reason}. Changes after that position are gone from this primary, so the change log cannot continue from it. Fix: point --source at a server that still has that binlog (a replica that kept it, with the same GTIDs), or start the master on a fresh --data-dir and re-seed every slave with --resnapshot; keep binlogs longer (expire_logs_days / binlog_expire_logs_seconds) than the master may be down")]
    BinlogPurged { position: String, reason: String },
    #[error("the primary's binlog no longer continues from position {position}: {reason}. It was reset (RESET MASTER) or the server was replaced, so reading on would skip or repeat changes; nothing after {position} was read. Fix: if --source points at the wrong server, point it back; otherwise start the master on a fresh --data-dir and re-seed every slave with --resnapshot")]
    BinlogReset { position: String, reason: String },
    #[error("connection to the primary {endpoint} was lost: {reason}")]
    Lost { endpoint: String, reason: String },
    #[error("query on the primary {endpoint} failed: {reason}")]
    Query { endpoint: String, reason: String },
}

impl SourceError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SourceError::Unreachable { .. } | SourceError::Lost { .. }
        )
    }
}

/// How to reach the primary; the password never appears in `Display`.
#[derive(Clone)]
pub struct Source {
    opts: Opts,
    endpoint: String,
    user: String,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Source({}@{})", self.user, self.endpoint)
    }
}

impl Source {
    /// Parses `mysql://USER:PASSWORD@HOST:PORT[?ssl-mode=MODE&ssl-ca=PATH]`.
    /// `ssl-mode` follows the MySQL client: `DISABLED` (and `PREFERRED`,
    /// which rowcast treats as plain TCP rather than guess), `REQUIRED`
    /// (encrypted, certificate not checked), `VERIFY_CA` (signed by
    /// `ssl-ca`), `VERIFY_IDENTITY` (and issued for this host name).
    pub fn from_url(url: &str) -> Result<Source, SourceError> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut rest = Vec::new();
        let (mut mode, mut ca) = (String::from("DISABLED"), None::<String>);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k.to_ascii_lowercase().replace('_', "-").as_str() {
                "ssl-mode" => mode = v.to_ascii_uppercase(),
                "ssl-ca" => ca = Some(v.to_string()),
                _ => rest.push(pair),
            }
        }
        let url_rest = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let opts =
            Opts::from_url(&url_rest).map_err(|e| SourceError::Url(redact(&e.to_string(), url)))?;
        let ssl = match mode.as_str() {
            "DISABLED" | "PREFERRED" => None,
            "REQUIRED" => Some(
                mysql_async::SslOpts::default()
                    .with_danger_accept_invalid_certs(true)
                    .with_danger_skip_domain_validation(true),
            ),
            "VERIFY_CA" | "VERIFY_IDENTITY" => {
                let ca = ca.clone().ok_or_else(|| {
                    SourceError::Url(format!(
                        "ssl-mode={mode} needs ssl-ca=PATH (the CA that signed the server's certificate)"
                    ))
                })?;
                Some(
                    mysql_async::SslOpts::default()
                        .with_root_certs(vec![std::path::PathBuf::from(ca).into()])
                        .with_danger_skip_domain_validation(mode == "VERIFY_CA"),
                )
            }
            other => {
                return Err(SourceError::Url(format!(
                    "unknown ssl-mode `{other}` (DISABLED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY)"
                )))
            }
        };
        let opts: Opts = OptsBuilder::from_opts(opts).ssl_opts(ssl).into();
        let endpoint = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
        let user = opts.user().unwrap_or("").to_string();
        let opts: Opts = OptsBuilder::from_opts(opts)
            .prefer_socket(false)
            .stmt_cache_size(1024)
            .client_found_rows(true)
            .tcp_keepalive(Some(Duration::from_secs(30)))
            .into();
        Ok(Source {
            opts,
            endpoint,
            user,
        })
    }

    /// Like [`Source::from_url`], with the password read from a file
    /// (trimmed) instead of the URL, so it is neither on the command line
    /// nor in the environment.
    pub fn from_url_and_password_file(
        url: &str,
        password_file: Option<&std::path::Path>,
    ) -> Result<Source, SourceError> {
        let mut source = Source::from_url(url)?;
        if let Some(path) = password_file {
            let pw = std::fs::read_to_string(path).map_err(|e| SourceError::PasswordFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            source.opts = OptsBuilder::from_opts(source.opts.clone())
                .pass(Some(pw.trim_end_matches(['\n', '\r']).to_string()))
                .into();
        }
        Ok(source)
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn opts(&self) -> &Opts {
        &self.opts
    }

    pub async fn connect(&self) -> Result<Conn, SourceError> {
        connect(&self.opts, &self.endpoint, &self.user).await
    }

    pub fn classify(&self, e: mysql_async::Error) -> SourceError {
        classify(e, &self.endpoint, &self.user)
    }
}

/// Removes a URL's password from text that might echo it.
pub fn redact(text: &str, url: &str) -> String {
    match Opts::from_url(url)
        .ok()
        .and_then(|o| o.pass().map(str::to_string))
    {
        Some(p) if !p.is_empty() => text.replace(&p, "***"),
        _ => text.to_string(),
    }
}

pub async fn connect(opts: &Opts, endpoint: &str, user: &str) -> Result<Conn, SourceError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts.clone())).await {
        Err(_) => Err(SourceError::Unreachable {
            endpoint: endpoint.to_string(),
            reason: format!("no answer within {CONNECT_TIMEOUT:?}"),
        }),
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(match classify(e, endpoint, user) {
            SourceError::Lost { endpoint, reason } => SourceError::Unreachable { endpoint, reason },
            other => other,
        }),
    }
}

pub fn classify(e: mysql_async::Error, endpoint: &str, user: &str) -> SourceError {
    match &e {
        mysql_async::Error::Server(s)
            if s.code == ER_ACCESS_DENIED || s.code == ER_DBACCESS_DENIED =>
        {
            SourceError::AccessDenied {
                endpoint: endpoint.into(),
                user: user.into(),
                reason: s.message.clone(),
            }
        }
        mysql_async::Error::Server(s) if s.code == ER_MASTER_FATAL_READING_BINLOG => {
            SourceError::BinlogPurged {
                position: "requested position".into(),
                reason: s.message.clone(),
            }
        }
        mysql_async::Error::Server(s) => SourceError::Query {
            endpoint: endpoint.into(),
            reason: format!("{} (error {})", s.message, s.code),
        },
        _ => SourceError::Lost {
            endpoint: endpoint.into(),
            reason: e.to_string(),
        },
    }
}

/// What the checks learned about the primary.
#[derive(Debug, Clone)]
pub struct PrimaryInfo {
    pub version: String,
    pub is_mariadb: bool,
    pub server_id: u32,
}

/// Checks every setting and grant rowcast depends on, before streaming.
pub async fn check_primary(source: &Source, conn: &mut Conn) -> Result<PrimaryInfo, SourceError> {
    let row: Option<(String, u32, String, String, String)> = conn
        .query_first(
            "SELECT @@version, @@server_id, @@log_bin, @@binlog_format, @@binlog_row_image",
        )
        .await
        .map_err(|e| source.classify(e))?;
    let (version, server_id, log_bin, format, image) = row.unwrap_or_default();
    let is_mariadb = version.to_ascii_lowercase().contains("mariadb");
    let endpoint = source.endpoint().to_string();
    let setting = |setting, actual: &str, expected, fix: &str| SourceError::Setting {
        endpoint: endpoint.clone(),
        setting,
        actual: actual.to_string(),
        expected,
        fix: fix.to_string(),
    };
    if log_bin != "1" && !log_bin.eq_ignore_ascii_case("ON") {
        return Err(setting(
            "log_bin",
            "OFF",
            "ON",
            "start the server with --log-bin (and a unique --server-id), then restart it",
        ));
    }
    if !format.eq_ignore_ascii_case("ROW") {
        return Err(setting(
            "binlog_format",
            &format,
            "ROW",
            "SET GLOBAL binlog_format=ROW and put binlog_format=ROW in the server's config",
        ));
    }
    if !image.eq_ignore_ascii_case("FULL") {
        return Err(setting(
            "binlog_row_image",
            &image,
            "FULL",
            "SET GLOBAL binlog_row_image=FULL and put it in the server's config",
        ));
    }
    // Without FULL metadata the TABLE_MAP has no column names (and before
    // MySQL 8 / MariaDB 10.5 no metadata at all): the slave then maps rows
    // onto its own table by position (`replica/positional.rs`), as a
    // native replica does. An error reading the variable is its absence.
    let metadata: Option<String> = conn
        .query_first("SELECT @@binlog_row_metadata")
        .await
        .ok()
        .flatten();
    if !metadata
        .as_deref()
        .is_some_and(|m| m.eq_ignore_ascii_case("FULL"))
    {
        tracing::warn!(
            %endpoint,
            binlog_row_metadata = metadata.as_deref().unwrap_or("(not supported by this server)"),
            "the primary logs no column names: each replica table must have the primary's \
             columns in the same order with the same types, and rows are mapped by position \
             onto the replica's current definition (a DDL that reorders columns while changes \
             are in flight maps them wrongly, as with native replication); \
             binlog_row_metadata=FULL (MySQL 8.0.1+, MariaDB 10.5+) is recommended"
        );
    }
    // log_bin_compress=ON needs no check: the decoder expands MariaDB's
    // compressed events (see `compressed`).
    check_grants(source, conn).await?;
    Ok(PrimaryInfo {
        version,
        is_mariadb,
        server_id,
    })
}

async fn check_grants(source: &Source, conn: &mut Conn) -> Result<(), SourceError> {
    let grants: Vec<String> = conn
        .query("SHOW GRANTS FOR CURRENT_USER()")
        .await
        .map_err(|e| source.classify(e))?;
    let all = grants.join("\n").to_ascii_uppercase();
    let has = |p: &str| all.contains("ALL PRIVILEGES ON *.*") || all.contains(p);
    let missing = |grant| SourceError::MissingGrant {
        endpoint: source.endpoint().into(),
        user: source.user().into(),
        grant,
    };
    if !has("REPLICATION SLAVE") && !has("REPLICATION REPLICA") {
        return Err(missing("REPLICATION SLAVE"));
    }
    // The position query needs REPLICATION CLIENT (MySQL) or BINLOG
    // MONITOR (MariaDB 10.5+); trying it is the reliable check.
    current_position_query(conn).await.map_err(|e| match &e {
        mysql_async::Error::Server(s) if s.code == ER_SPECIFIC_ACCESS_DENIED => {
            missing("REPLICATION CLIENT")
        }
        _ => source.classify(e),
    })?;
    Ok(())
}

/// `(file, position, Executed_Gtid_Set)`: the last only on MySQL, read in
/// the same row so the set matches the position exactly.
async fn current_position_query(
    conn: &mut Conn,
) -> Result<Option<(String, u64, Option<String>)>, mysql_async::Error> {
    // MySQL 8.4 removed SHOW MASTER STATUS in favour of SHOW BINARY LOG STATUS.
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Ok(r) => r,
        Err(mysql_async::Error::Server(s)) if s.code == 1064 => {
            conn.query_first("SHOW BINARY LOG STATUS").await?
        }
        Err(e) => return Err(e),
    };
    Ok(row.and_then(|r| {
        let file: Option<String> = r.get(0);
        let pos: Option<u64> = r.get(1);
        let executed: Option<String> = r.get("Executed_Gtid_Set");
        file.zip(pos).map(|(f, p)| (f, p, executed))
    }))
}

/// The primary's current end of binlog: where a new change log starts.
pub async fn current_position(
    source: &Source,
    conn: &mut Conn,
) -> Result<SourcePosition, SourceError> {
    match current_position_query(conn)
        .await
        .map_err(|e| source.classify(e))?
    {
        Some((file, pos, _)) => Ok(SourcePosition::new(file, pos)),
        None => Err(SourceError::Setting {
            endpoint: source.endpoint().into(),
            setting: "log_bin",
            actual: "OFF".into(),
            expected: "ON",
            fix: "start the server with --log-bin".into(),
        }),
    }
}

/// How often the primary sends a heartbeat on an idle stream; silence for
/// several periods means the connection is dead.
pub const HEARTBEAT_PERIOD: Duration = Duration::from_secs(2);

/// The primary's GTID position when it has a single replication domain
/// (MariaDB `@@gtid_binlog_pos`), to resume from after a failover.
pub async fn current_gtid(conn: &mut Conn) -> Option<Gtid> {
    let pos: Option<String> = conn
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .ok()
        .flatten();
    let pos = pos?;
    if pos.contains(',') {
        return None;
    }
    pos.trim().parse().ok()
}

/// MariaDB's GTID position at exactly `at` (`BINLOG_GTID_POS`), when it
/// has a single replication domain: unlike `@@gtid_binlog_pos` read next
/// to the position, no write can slip in between.
pub async fn gtid_at(conn: &mut Conn, at: &SourcePosition) -> Option<Gtid> {
    let pos: Option<String> = conn
        .exec_first::<Option<String>, _, _>("SELECT BINLOG_GTID_POS(?, ?)", (&at.file, at.offset))
        .await
        .ok()
        .flatten()
        .flatten();
    let pos = pos?;
    if pos.contains(',') {
        return None;
    }
    pos.trim().parse().ok()
}

/// A MySQL primary's current end of binlog with its executed GTID set at
/// exactly that point (one `SHOW ... STATUS` row), so a failover that
/// resumes by that set skips nothing and repeats nothing. The set is
/// `None` on MariaDB (no such column) or with GTIDs off.
pub async fn current_position_with_gtid_set(
    source: &Source,
    conn: &mut Conn,
) -> Result<(SourcePosition, Option<GtidSet>), SourceError> {
    let Some((file, pos, executed)) = current_position_query(conn)
        .await
        .map_err(|e| source.classify(e))?
    else {
        // No binlog: current_position says so, with the fix.
        return current_position(source, conn).await.map(|p| (p, None));
    };
    let position = SourcePosition::new(file, pos);
    let Some(executed) = executed else {
        return Ok((position, None));
    };
    // An empty set on a server with GTIDs on is a real start (a fresh
    // server); with GTIDs off there is nothing to resume by.
    let mode: Option<String> = conn
        .query_first("SELECT @@GLOBAL.gtid_mode")
        .await
        .ok()
        .flatten();
    let on = mode.is_some_and(|m| m.eq_ignore_ascii_case("ON"));
    Ok((position, on.then(|| executed.parse().ok()).flatten()))
}

/// The primary's binlog files and GTID state, to tell a binlog that
/// continues from one that was reset (see `continuity`).
pub async fn binlog_state(
    source: &Source,
    conn: &mut Conn,
    from: &SourcePosition,
) -> Result<BinlogState, SourceError> {
    let files: Vec<mysql_async::Row> = match conn.query("SHOW BINARY LOGS").await {
        Ok(rows) => rows,
        // A lost connection is worth a retry; a missing grant only makes
        // the file check impossible (the GTID check still runs).
        Err(e) => match source.classify(e) {
            e @ (SourceError::Lost { .. } | SourceError::Unreachable { .. }) => return Err(e),
            e => {
                tracing::warn!(cause = %e, "cannot list the primary's binlog files; a reset binlog is then told by GTIDs only. Fix: GRANT BINLOG MONITOR (MariaDB) or REPLICATION CLIENT (MySQL)");
                Vec::new()
            }
        },
    };
    let files = files
        .into_iter()
        .filter_map(|r| {
            let name: Option<String> = r.get(0);
            let size: Option<u64> = r.get(1);
            name.zip(size)
        })
        .collect();
    // Each query fails on the other kind of server: absent means unknown.
    let mariadb_state: Option<String> = conn
        .query_first("SELECT @@GLOBAL.gtid_binlog_state")
        .await
        .ok()
        .flatten();
    let mysql_executed: Option<String> = match mariadb_state {
        Some(_) => None,
        None => conn
            .query_first("SELECT @@GLOBAL.gtid_executed")
            .await
            .ok()
            .flatten(),
    };
    let gtid_at_resume = match (&mariadb_state, &from.gtid) {
        (Some(_), Some(Gtid::MariaDb { .. })) => conn
            .exec_first::<Option<String>, _, _>(
                "SELECT BINLOG_GTID_POS(?, ?)",
                (&from.file, from.offset),
            )
            .await
            .ok()
            .map(Option::flatten),
        _ => None,
    };
    Ok(BinlogState {
        files,
        mariadb_state,
        mysql_executed,
        gtid_at_resume,
    })
}

/// Where a binlog dump starts: by file and offset, or by GTID after a
/// failover (where the old coordinates mean nothing on the new primary).
#[derive(Debug, Clone, Copy)]
pub enum StreamStart<'a> {
    Position,
    /// MariaDB: after `from`'s GTID (`@slave_connect_state`).
    MariaDbGtid,
    /// MySQL: everything not in this set (COM_BINLOG_DUMP_GTID).
    MySqlGtidSet(&'a GtidSet),
}

/// The session settings and the dump request for a stream from `from`.
/// Pure, so what is asked of the server is unit-tested without one.
pub fn dump_request<'a>(
    server_id: u32,
    from: &'a SourcePosition,
    start: StreamStart<'_>,
) -> Result<(Vec<String>, BinlogStreamRequest<'a>), SourceError> {
    let mut setup = vec![
        // Makes MariaDB send its own GTID events rather than QUERY stand-ins.
        "SET @mariadb_slave_capability=4".to_string(),
        format!(
            "SET @master_heartbeat_period={}",
            HEARTBEAT_PERIOD.as_nanos()
        ),
    ];
    let request = BinlogStreamRequest::new(server_id);
    let request =
        match start {
            StreamStart::Position => request
                .with_filename(from.file.as_bytes())
                .with_pos(from.offset),
            StreamStart::MariaDbGtid => match &from.gtid {
                Some(g @ Gtid::MariaDb { .. }) => {
                    setup.push(format!("SET @slave_connect_state='{g}'"));
                    request.with_filename(&b""[..]).with_pos(4u64)
                }
                _ => return Err(SourceError::BinlogPurged {
                    position: from.to_string(),
                    reason:
                        "the primary changed and the change log has no MariaDB GTID to resume from"
                            .into(),
                }),
            },
            StreamStart::MySqlGtidSet(set) => request
                .with_gtid()
                .with_filename(&b""[..])
                .with_pos(4u64)
                .with_gtid_set(sid_blocks(set)),
        };
    Ok((setup, request))
}

/// A GTID set as the SID blocks of COM_BINLOG_DUMP_GTID.
/// A tagged entry switches mysql_common to MySQL's tagged encoding of the
/// whole block (`Gtid_set::encode` with `Gtid_format::tagged`).
pub fn sid_blocks(set: &GtidSet) -> Vec<Sid<'static>> {
    set.iter()
        .map(|(uuid, tag, intervals)| {
            let sid = Sid::new(*uuid).with_intervals(
                intervals
                    .iter()
                    .map(|&(s, e)| GnoInterval::new(s, e))
                    .collect(),
            );
            match tag {
                Some(t) => sid.with_tag(
                    Tag::new(t.as_str().to_owned())
                        .expect("GtidTag checks the rules mysql_common's Tag checks"),
                ),
                None => sid,
            }
        })
        .collect()
}

/// Opens a binlog stream starting at `from`, as a replica with `server_id`.
pub async fn open_stream(
    source: &Source,
    server_id: u32,
    from: &SourcePosition,
    start: StreamStart<'_>,
) -> Result<BinlogStream, SourceError> {
    let (setup, request) = dump_request(server_id, from, start)?;
    let mut conn = source.connect().await?;
    if matches!(start, StreamStart::Position) {
        let state = binlog_state(source, &mut conn, from).await?;
        if let Some(reason) = continuity::discontinuity(from, &state) {
            return Err(SourceError::BinlogReset {
                position: from.to_string(),
                reason,
            });
        }
    }
    for q in setup {
        conn.query_drop(q).await.map_err(|e| source.classify(e))?;
    }
    conn.get_binlog_stream(request)
        .await
        .map_err(|e| match source.classify(e) {
            SourceError::BinlogPurged { reason, .. } => SourceError::BinlogPurged {
                position: from.to_string(),
                reason,
            },
            other => other,
        })
}

/// How long the target may sit idle on a session whose answer rowcast is
/// still waiting for before the connection counts as frozen. A request in
/// flight that long while the server shows the session idle was lost on
/// the way, or its answer was (a silent peer, a middlebox that dropped
/// the flow without a FIN or RST): TCP keepalive cannot tell, because
/// whatever holds the connection still acknowledges. Above the time a
/// large packet takes to cross a slow link, which also shows as idle.
pub const SESSION_SILENCE: Duration = Duration::from_secs(15);

/// Watches session `id` on the target while a request on it is
/// unanswered; returns why it counts as lost (killing it when the server
/// can be reached, so it holds no locks), and never if it is fine. Run it
/// beside the request and drop it with the request.
pub async fn watch_session(target: &Source, id: u32) -> String {
    tokio::time::sleep(SESSION_SILENCE).await;
    loop {
        match tokio::time::timeout(CONNECT_TIMEOUT * 2, probe_session(target, id)).await {
            Ok(Ok(Some(reason))) => return reason,
            Ok(Ok(None)) => {}
            // No answer for the silence, and the target cannot even be
            // asked on a new connection: the request is as good as lost.
            // Giving up without a kill is safe only because of the
            // applier's session lock (`Applier::connect`): the next
            // applier cannot read the checkpoint while this session lives,
            // so a COMMIT of it still on its way lands before, or never.
            Ok(Err(e)) => {
                return format!(
                    "no answer on session {id} for {SESSION_SILENCE:?} and the target cannot be reached on a new connection either: {e}"
                )
            }
            Err(_) => {
                return format!(
                    "no answer on session {id} for {SESSION_SILENCE:?} and none to a probe on a new connection either"
                )
            }
        }
        tokio::time::sleep(SESSION_SILENCE / 3).await;
    }
}

/// One look at session `id` from a connection of its own.
async fn probe_session(target: &Source, id: u32) -> Result<Option<String>, SourceError> {
    let mut conn = target.connect().await?;
    let lost = |reason: &str| SourceError::Lost {
        endpoint: target.endpoint().into(),
        reason: reason.into(),
    };
    let row: Option<(String, i64)> = tokio::time::timeout(
        CONNECT_TIMEOUT,
        conn.exec_first(
            "SELECT COMMAND, TIME FROM information_schema.PROCESSLIST WHERE ID = ?",
            (id,),
        ),
    )
    .await
    .map_err(|_| lost("the session probe got no answer"))?
    .map_err(|e| target.classify(e))?;
    let verdict = match row {
        None => Some(format!(
            "the target has no session {id} any more: the connection died without a close"
        )),
        Some((command, idle)) if command == "Sleep" && idle >= SESSION_SILENCE.as_secs() as i64 => {
            // Its open transaction would hold locks until the server's own
            // timeouts (hours); the next applier must not wait on them.
            kill_and_wait(&mut conn, id).await;
            Some(format!(
                "session {id} on the target has been idle for {idle}s while rowcast waited for its answer: the connection is frozen (killed it)"
            ))
        }
        Some(_) => None,
    };
    let _ = tokio::time::timeout(CONNECT_TIMEOUT, conn.disconnect()).await;
    Ok(verdict)
}

/// Kills session `id` from `conn` and waits (bounded, about 10 s) until
/// the server lists it no more; returns whether it is gone. KILL only
/// marks the session: until it is gone a COMMIT that was on its way could
/// still land, and its locks (the applier's session lock among them) are
/// still held.
pub async fn kill_and_wait(conn: &mut Conn, id: u32) -> bool {
    let _ = tokio::time::timeout(
        CONNECT_TIMEOUT,
        conn.query_drop(format!("KILL CONNECTION {id}")),
    )
    .await;
    for _ in 0..40 {
        let still: Result<Option<u64>, _> = conn
            .exec_first(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE ID = ?",
                (id,),
            )
            .await;
        if !matches!(still, Ok(Some(_))) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

/// A heartbeat from the primary's dump thread, which sends one only when it
/// has sent its whole binlog and waited a heartbeat period for more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The binlog file and offset the dump had reached, when the event
    /// names them (MariaDB and MySQL's version 1 heartbeat do).
    pub position: Option<(String, u64)>,
}

/// The event as a heartbeat, or `None` for any other event.
pub fn as_heartbeat(event: &mysql_common::binlog::events::Event) -> Option<Heartbeat> {
    const HEARTBEAT_LOG_EVENT: u8 = 27;
    const HEARTBEAT_LOG_EVENT_V2: u8 = 41;
    match event.header().event_type_raw() {
        HEARTBEAT_LOG_EVENT => {
            // The body is the file name (the checksum is cut off by
            // mysql_common); anything else is not trusted as a name.
            let name = std::str::from_utf8(event.data()).ok();
            let position = name
                .filter(|n| !n.is_empty() && n.ends_with(|c: char| c.is_ascii_digit()))
                .filter(|n| n.chars().all(|c| c.is_ascii_graphic()))
                .map(|n| (n.to_string(), u64::from(event.header().log_pos())));
            Some(Heartbeat { position })
        }
        HEARTBEAT_LOG_EVENT_V2 => Some(Heartbeat { position: None }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::packets::ComBinlogDumpGtid;
    use mysql_common::proto::MySerialize;

    #[test]
    fn mysql_failover_asks_for_everything_outside_the_logged_gtid_set() {
        let set: GtidSet = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,\
                            0a0b0c0d-0000-0000-0000-000000000001:1-3"
            .parse()
            .unwrap();
        let from = SourcePosition::new("old.000009", 1234);
        let (setup, _) = dump_request(7, &from, StreamStart::MySqlGtidSet(&set)).unwrap();
        assert!(!setup.iter().any(|s| s.contains("slave_connect_state")));

        // The SID blocks as MySQL reads them: count, then per UUID the
        // number of intervals and `[start, end)` pairs (end exclusive).
        let mut bytes = Vec::new();
        ComBinlogDumpGtid::new(7)
            .with_sids(sid_blocks(&set))
            .serialize(&mut bytes);
        let mut expect = Vec::new();
        expect.extend_from_slice(&2u64.to_le_bytes());
        expect.extend_from_slice(&[0x0a, 0x0b, 0x0c, 0x0d]);
        expect.extend_from_slice(&[0; 11]);
        expect.push(1);
        expect.extend_from_slice(&1u64.to_le_bytes());
        for n in [1u64, 4] {
            expect.extend_from_slice(&n.to_le_bytes());
        }
        expect.extend_from_slice(&[
            0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42,
            0x95, 0x62,
        ]);
        expect.extend_from_slice(&2u64.to_le_bytes());
        for n in [1u64, 6, 7, 8] {
            expect.extend_from_slice(&n.to_le_bytes());
        }
        assert!(
            bytes.ends_with(&expect),
            "SID block differs:\n{bytes:?}\n{expect:?}"
        );
    }

    #[test]
    fn mariadb_failover_resumes_from_the_last_gtid_and_needs_one() {
        let mut from = SourcePosition::new("old.000009", 1234);
        from.gtid = Some(Gtid::MariaDb {
            domain: 0,
            server: 1,
            seq: 42,
        });
        let (setup, _) = dump_request(7, &from, StreamStart::MariaDbGtid).unwrap();
        assert!(setup.contains(&"SET @slave_connect_state='0-1-42'".to_string()));
        from.gtid = None;
        let Err(err) = dump_request(7, &from, StreamStart::MariaDbGtid) else {
            panic!("a MariaDB failover without a GTID must not start anywhere")
        };
        assert!(matches!(err, SourceError::BinlogPurged { .. }));
    }
}
