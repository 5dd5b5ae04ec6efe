//! One applier session per slave name on a replica: the server lock
//! `rowcast:<name>` that an applier session takes before it reads its
//! checkpoint and holds until it ends, what happens when another session
//! holds it (this slave's previous one, an idle zombie, or a second
//! `rowcast slave` with the same name), and the keep-alive and liveness
//! marker that keep a live holder from looking like a zombie.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::replica::apply::Applier;
use crate::replica::apply_error::ApplyError;
use crate::source::{Source, SESSION_SILENCE};

/// How long a slave waits for its session lock while a live session holds
/// it, before it gives up with [`ApplyError::SessionLocked`]. A second
/// slave with the same name must not wait for ever unnoticed: it exits
/// with an error that names the other session and the fix.
pub const LOCK_WAIT_LIMIT: Duration = Duration::from_secs(60);
/// One `GET_LOCK` wait; between two the holder is looked at and logged.
const LOCK_STEP: Duration = Duration::from_secs(5);
/// An applier idle this long touches its session, so that its `Sleep`
/// time in the processlist stays well below [`SESSION_SILENCE`], the age
/// at which a holder of the lock counts as a zombie and is killed.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(5);
/// MariaDB and MySQL refuse longer lock names.
const LOCK_NAME_MAX: usize = 64;

/// The server lock of slave `name`: `rowcast:<name>` when that fits in
/// 64 characters, otherwise `rowcast:<start of name>~<hash of name>`, so
/// it stays readable in a processlist and distinct for distinct names.
pub fn session_lock_name(name: &str) -> String {
    lock_name("rowcast:", name)
}

/// The lock a slave process's liveness marker holds (see [`AliveMarker`]).
pub fn alive_lock_name(name: &str) -> String {
    lock_name("rowcast-alive:", name)
}

fn lock_name(prefix: &str, name: &str) -> String {
    let plain = format!("{prefix}{name}");
    // Bytes, not characters: the bound holds however the server counts.
    if plain.len() <= LOCK_NAME_MAX {
        return plain;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let room = LOCK_NAME_MAX - prefix.len() - 1 - hash.len();
    let mut start = String::new();
    for c in name.chars() {
        if start.len() + c.len_utf8() > room {
            break;
        }
        start.push(c);
    }
    format!("{prefix}{start}~{hash}")
}

/// Takes `lock` on `conn`, waiting while another session holds it. A
/// holder that is this process's previous session, or that has sat idle
/// (`Sleep`) for [`SESSION_SILENCE`] (a frozen or abandoned connection:
/// a live applier touches its session every [`KEEPALIVE_EVERY`]) is
/// killed and waited for until it is gone; any other holder is waited for
/// up to [`LOCK_WAIT_LIMIT`], then this slave stops.
pub(super) async fn take_session_lock(
    conn: &mut Conn,
    target: &Source,
    name: &str,
    lock: &str,
    previous: Option<u32>,
) -> Result<(), ApplyError> {
    let started = std::time::Instant::now();
    // The first try does not wait, so a holder is reported at once.
    let mut wait = 0u64;
    let mut last_holder: Option<(u64, String)> = None;
    loop {
        let got: Option<Option<i64>> = conn
            .exec_first("SELECT GET_LOCK(?, ?)", (lock, wait))
            .await
            .map_err(|e| target.classify(e))?;
        if got.flatten() == Some(1) {
            if let Some((holder, _)) = last_holder {
                tracing::info!(slave = %name, lock, previous_holder = holder, waited = ?started.elapsed(), "took this slave's session lock on the replica");
            }
            return Ok(());
        }
        wait = LOCK_STEP.as_secs();
        let waited = started.elapsed();
        let holder: Option<Option<u64>> = conn
            .exec_first("SELECT IS_USED_LOCK(?)", (lock,))
            .await
            .map_err(|e| target.classify(e))?;
        type Holder = (String, String, String, i64, Option<String>, Option<String>);
        let info: Option<Holder> = match holder.flatten() {
            Some(id) => conn
                .exec_first(
                    "SELECT USER, HOST, COMMAND, TIME, STATE, LEFT(INFO, 200) FROM information_schema.PROCESSLIST WHERE ID = ?",
                    (id,),
                )
                .await
                .map_err(|e| target.classify(e))?,
            None => None,
        };
        let (Some(holder), Some((user, host, command, time, state, statement))) =
            (holder.flatten(), info)
        else {
            // Freed (or its session just ended) in between: try again.
            if waited >= LOCK_WAIT_LIMIT * 2 {
                let (holder, holder_info) =
                    last_holder.unwrap_or((0, "a session that kept changing".into()));
                return Err(locked(name, target, lock, holder, holder_info, waited));
            }
            continue;
        };
        let mut holder_info = match state.filter(|s| !s.is_empty()) {
            Some(state) => format!("{user}@{host}, {command} for {time}s, {state}"),
            None => format!("{user}@{host}, {command} for {time}s"),
        };
        // A statement still running may be this slave's own, left by a run
        // that was killed during it (a long ALTER): say what it is.
        if let Some(statement) = statement.filter(|_| command == "Query") {
            holder_info.push_str(&format!(
                ", running `{statement}`: if that is a statement of an earlier run of this slave, wait until it ends or KILL it"
            ));
        }
        last_holder = Some((holder, holder_info.clone()));
        let ours = previous.is_some_and(|p| u64::from(p) == holder);
        // Idle, and no live slave process behind it: a live one keeps its
        // liveness marker busy even while its applier session waits (for a
        // master that is down, a snapshot being prepared, a backoff).
        let idle = command == "Sleep"
            && time >= SESSION_SILENCE.as_secs() as i64
            && !marker_alive(conn, target, name).await?;
        if waited >= LOCK_WAIT_LIMIT && !(ours || idle && waited < LOCK_WAIT_LIMIT * 2) {
            return Err(locked(name, target, lock, holder, holder_info, waited));
        }
        if ours || idle {
            // The previous session of this slave was given up (it may be
            // frozen, or alive after a retried error); an idle holder is
            // one nobody drives any more. Its open transaction rolls back;
            // a COMMIT of it still on its way lands before it is gone, or
            // never, and the checkpoint is read only after that.
            tracing::warn!(slave = %name, lock, holder, holder_info = %holder_info, previous = ours, "the session holding this slave's lock on the replica is this slave's previous one or has been idle too long: killing it");
            let id = u32::try_from(holder).unwrap_or(u32::MAX);
            if !crate::source::kill_and_wait(conn, id).await {
                tracing::warn!(slave = %name, holder, "the killed session is still listed on the replica; waiting for it");
            }
            continue;
        }
        tracing::warn!(
            slave = %name,
            lock,
            holder,
            holder_info = %holder_info,
            waited = ?waited,
            gives_up_after = ?LOCK_WAIT_LIMIT,
            "session {holder} holds this slave's lock on the replica, so this slave must not apply: another `rowcast slave --name {name}` is running against this replica (run one per --name), or a dead slave's session is still open (the server drops it after wait_timeout, or KILL {holder}); waiting"
        );
    }
}

/// Whether a slave process named `name` shows it is alive: its liveness
/// lock is held by a session that ran a command within the watchdog
/// silence.
async fn marker_alive(conn: &mut Conn, target: &Source, name: &str) -> Result<bool, ApplyError> {
    let active: Option<Option<i64>> = conn
        .exec_first(
            "SELECT TIME FROM information_schema.PROCESSLIST WHERE ID = IS_USED_LOCK(?)",
            (alive_lock_name(name),),
        )
        .await
        .map_err(|e| target.classify(e))?;
    Ok(active
        .flatten()
        .is_some_and(|idle| idle < SESSION_SILENCE.as_secs() as i64))
}

/// A slave process's liveness marker: a connection of its own to the
/// replica that holds [`alive_lock_name`] and runs a command every
/// [`KEEPALIVE_EVERY`], whatever the applier session is waiting for. So a
/// second `rowcast slave` with the same name tells a live slave whose
/// applier session is idle (waiting for its master) from a zombie session
/// nobody drives, and kills only the zombie. Ends with the applier.
pub(super) struct AliveMarker(tokio::task::JoinHandle<()>);

impl AliveMarker {
    pub(super) fn spawn(target: Source, name: &str) -> AliveMarker {
        let lock = alive_lock_name(name);
        AliveMarker(tokio::spawn(async move {
            loop {
                // Trouble here never stops the applying: try again later.
                if let Ok(mut conn) = target.connect().await {
                    let got: Result<Option<Option<i64>>, _> =
                        conn.exec_first("SELECT GET_LOCK(?, 0)", (&lock,)).await;
                    if matches!(got, Ok(Some(Some(1)))) {
                        loop {
                            tokio::time::sleep(KEEPALIVE_EVERY).await;
                            let touched =
                                tokio::time::timeout(SESSION_SILENCE, conn.query_drop("DO 0"))
                                    .await;
                            if !matches!(touched, Ok(Ok(()))) {
                                break;
                            }
                        }
                    }
                }
                tokio::time::sleep(KEEPALIVE_EVERY).await;
            }
        }))
    }
}

impl Drop for AliveMarker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn locked(
    name: &str,
    target: &Source,
    lock: &str,
    holder: u64,
    holder_info: String,
    waited: Duration,
) -> ApplyError {
    ApplyError::SessionLocked {
        name: name.to_string(),
        replica: target.endpoint().to_string(),
        lock: lock.to_string(),
        holder,
        holder_info,
        waited_secs: waited.as_secs(),
    }
}

impl Applier {
    /// The session lock again after COM_CHANGE_USER, which resets the
    /// session and with it frees its user locks. Another session may have
    /// taken it in between: then this one must not go on.
    pub(super) async fn relock(&mut self) -> Result<(), ApplyError> {
        let held: Option<Option<i64>> = self
            .conn
            .exec_first("SELECT IS_USED_LOCK(?) = CONNECTION_ID()", (&self.lock,))
            .await
            .map_err(|e| ApplyError::Lost(e.to_string()))?;
        if held.flatten() == Some(1) {
            return Ok(());
        }
        let got: Option<Option<i64>> = self
            .conn
            .exec_first("SELECT GET_LOCK(?, 0)", (&self.lock,))
            .await
            .map_err(|e| ApplyError::Lost(e.to_string()))?;
        if got.flatten() == Some(1) {
            return Ok(());
        }
        Err(ApplyError::Lost(format!(
            "another session took this slave's lock `{}` on the replica while this one changed its default database; reconnecting (the new session waits for the lock)",
            self.lock
        )))
    }

    /// Touches the session if it has been idle for [`KEEPALIVE_EVERY`], so
    /// that another slave started with the same name sees it alive and
    /// does not take it for a zombie. Call it while waiting for work.
    pub async fn keep_alive(&mut self) -> Result<(), ApplyError> {
        if self.last_active.elapsed() < KEEPALIVE_EVERY {
            return Ok(());
        }
        match tokio::time::timeout(SESSION_SILENCE, self.conn.query_drop("DO 0")).await {
            Ok(Ok(())) => {
                self.last_active = std::time::Instant::now();
                Ok(())
            }
            Ok(Err(e)) => Err(ApplyError::Lost(e.to_string())),
            Err(_) => Err(ApplyError::Lost(format!(
                "the replica did not answer a keep-alive within {SESSION_SILENCE:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod session_lock_tests {
    use super::*;

    #[test]
    fn a_short_name_is_its_own_lock_and_a_long_one_is_hashed_within_64_bytes() {
        assert_eq!(session_lock_name("eu-replica-1"), "rowcast:eu-replica-1");
        let long = "x".repeat(56);
        assert_eq!(session_lock_name(&long), format!("rowcast:{long}"));
        let a = session_lock_name(&format!("{}a", "é".repeat(40)));
        let b = session_lock_name(&format!("{}b", "é".repeat(40)));
        assert!(a.len() <= 64 && b.len() <= 64, "{a} / {b}");
        assert_ne!(a, b, "names that differ after the kept start differ");
        assert!(a.starts_with("rowcast:éé"), "stays readable: {a}");
    }

    #[test]
    fn the_liveness_lock_is_another_name_within_64_bytes() {
        assert_eq!(alive_lock_name("r1"), "rowcast-alive:r1");
        let long = "y".repeat(60);
        let alive = alive_lock_name(&long);
        assert!(alive.len() <= 64, "{alive}");
        assert_ne!(alive, session_lock_name(&long));
    }
}
