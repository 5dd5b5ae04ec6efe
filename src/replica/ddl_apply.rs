//! Running a transaction that holds statements the primary logged as text
//! (DDL, and whatever else a native replica would run as a statement),
//! under the pending-DDL marker of the commit protocol (`apply.rs`,
//! invariant 4): the catalog fingerprint taken before a first attempt and
//! compared on a retry, each statement run in the primary's session
//! context and default database, and its outcome judged against the
//! primary's (`ddl.rs` builds that context and decides; this module runs
//! it). Row changes between the statements go through `rows.rs`.

use std::sync::Arc;

use mysql_async::prelude::Queryable;

use crate::log::change::{Change, Ddl, Transaction};
use crate::replica::apply::{Applier, SESSION_SETUP};
use crate::replica::apply_error::{server_code, sql_error, ApplyError, ER_BAD_DB_ERROR};
use crate::replica::catalog_fingerprint;
use crate::replica::ddl::{self, ReplicaDialect, Verdict};
use crate::source::objects;
use crate::source::position::SourcePosition;
use crate::sql;

impl Applier {
    /// Applies `txn`, which holds statements, and its checkpoint: the
    /// pending-DDL marker first (committed), then each statement, the row
    /// changes around them in local transactions, the last of which also
    /// moves the checkpoint. The caller rolls back on error.
    pub(super) async fn apply_with_ddl(
        &mut self,
        seq: u64,
        txn: &Transaction,
    ) -> Result<(), ApplyError> {
        let pos = &txn.position;
        let mut retrying = self.checkpoint.ddl_pending_seq == Some(seq);
        // Whether the catalog the transaction's statements change has moved
        // since the marker: told before anything runs, with the same digest
        // the first attempt recorded, so a statement that would succeed a
        // second time (`ADD KEY (c)` makes `c_2`) is not run twice.
        self.retry_catalog_moved = false;
        if retrying {
            if let Some(before) = self.pending_fingerprint.clone() {
                let now = self.txn_fingerprint(txn, pos).await?;
                // Unchanged: nothing of it ran before the restart, and an
                // "already exists" now is a real failure (run_ddl says so).
                self.retry_catalog_moved = now != before;
            }
        } else {
            // Only a first attempt records the catalog: a retry compares
            // against what it was before the statement ever ran.
            let fingerprint = self.txn_fingerprint(txn, pos).await?;
            self.pending_fingerprint = Some(fingerprint);
        }
        let statements = txn
            .changes
            .iter()
            .filter(|c| matches!(c, Change::Ddl(_)))
            .count();
        self.mark_ddl_pending(seq, pos).await?;
        let mut in_rows_txn = false;
        for (i, change) in txn.changes.iter().enumerate() {
            match change {
                Change::Ddl(ddl) => {
                    if in_rows_txn {
                        self.local("COMMIT", pos).await?;
                        in_rows_txn = false;
                    }
                    if retrying && self.retry_catalog_moved && statements == 1 {
                        // DDL is atomic (MariaDB 10.6+): the catalog moved,
                        // so the one statement ran before the restart.
                        tracing::warn!(position = %pos, sql = %ddl.sql_text(), "statement had been applied before the restart (its catalog changed since then); not running it again");
                        self.plans.clear();
                        self.positional.clear();
                        retrying = false;
                        continue;
                    }
                    let verdict = self.run_ddl(ddl, pos, retrying).await?;
                    self.plans.clear();
                    self.positional.clear();
                    if verdict == Verdict::Done {
                        // It had not run before the crash, so neither had
                        // the statements after it.
                        retrying = false;
                    }
                }
                other => {
                    if !in_rows_txn {
                        self.local("START TRANSACTION", pos).await?;
                        in_rows_txn = true;
                    }
                    self.apply_change(txn, i, other).await?;
                }
            }
        }
        if !in_rows_txn {
            self.local("START TRANSACTION", pos).await?;
        }
        self.write_checkpoint(seq, txn).await?;
        self.local("COMMIT", pos).await?;
        Ok(())
    }

    /// The fingerprint of the catalog `txn`'s statements can change.
    async fn txn_fingerprint(
        &mut self,
        txn: &Transaction,
        pos: &SourcePosition,
    ) -> Result<String, ApplyError> {
        use sha2::Digest;
        let mut all = Vec::new();
        for change in &txn.changes {
            if let Change::Ddl(ddl) = change {
                let fp = catalog_fingerprint::compute(&mut self.conn, ddl)
                    .await
                    .map_err(|e| sql_error(pos, e))?;
                all.push(fp);
            }
        }
        Ok(match &all[..] {
            [one] => one.clone(),
            _ => format!("{:x}", sha2::Sha256::digest(all.join(",").as_bytes())),
        })
    }

    /// What the replica understands of a primary's session context, read
    /// once per connection.
    pub(super) async fn dialect(&mut self) -> Result<Arc<ReplicaDialect>, mysql_async::Error> {
        if let Some(d) = &self.dialect {
            return Ok(d.clone());
        }
        let version: Option<String> = self.conn.query_first("SELECT VERSION()").await?;
        // MariaDB 10.10+ lists its UCA 14 collations by full name and id
        // only in the applicability table (COLLATIONS has `uca1400_ai_ci`
        // without an id); elsewhere COLLATIONS has them all.
        let applicability: Vec<(String, u16)> = self
            .conn
            .query(
                "SELECT FULL_COLLATION_NAME, ID FROM information_schema.COLLATION_CHARACTER_SET_APPLICABILITY WHERE ID IS NOT NULL",
            )
            .await
            .unwrap_or_default();
        let mut collations: Vec<(String, u16)> = self
            .conn
            .query(
                "SELECT COLLATION_NAME, ID FROM information_schema.COLLATIONS WHERE ID IS NOT NULL",
            )
            .await?;
        collations.extend(applicability);
        let d = Arc::new(ReplicaDialect {
            mariadb: version.is_some_and(|v| v.contains("MariaDB")),
            collations: collations.into_iter().collect(),
        });
        self.dialect = Some(d.clone());
        Ok(d)
    }

    /// Runs one statement in the primary's session context and judges how
    /// it ended against how it ended on the primary.
    async fn run_ddl(
        &mut self,
        ddl: &Ddl,
        pos: &SourcePosition,
        retrying: bool,
    ) -> Result<Verdict, ApplyError> {
        let ddl_err = |reason: String| ApplyError::Ddl {
            position: pos.to_string(),
            sql: ddl.sql_text().chars().take(300).collect(),
            reason,
        };
        let lost = |e: mysql_async::Error| match server_code(&e) {
            Some(_) => sql_error(pos, e),
            None => ApplyError::Lost(e.to_string()),
        };
        let db_absent = self.use_database(ddl, pos).await?;
        let dialect = self.dialect().await.map_err(lost)?;
        let context = ddl::context(ddl, &dialect)
            .map_err(|reason| {
                ddl_err(format!(
                    "{reason}. Create the statement's objects on the replica by hand with a collation \
                     it has, then restart the slave with the checkpoint moved past it, or use a replica \
                     that has the primary's collations"
                ))
            })?
            .join(", ");
        if let Err(e) = self.conn.query_drop(format!("SET SESSION {context}")).await {
            return Err(match server_code(&e) {
                Some(_) => ddl_err(format!(
                    "the replica does not accept the primary's session context `SET SESSION {context}`: {e}. \
                     Give the replica what the primary has (time zone tables loaded with \
                     mariadb-tzinfo-to-sql, the same collations and locales) and restart the slave"
                )),
                None => ApplyError::Lost(e.to_string()),
            });
        }
        // A replicated event must not run here too (native: SLAVESIDE_DISABLED).
        let disabled = objects::disabled_on_replica(&ddl.sql);
        // MySQL 8's collation names, which MariaDB lacks, as the replica's.
        let statement = dialect.translate(&disabled);
        let result = self.conn.query_drop(statement.as_ref()).await;
        // Restore the apply session whatever happened.
        self.conn.query_drop(SESSION_SETUP).await.map_err(lost)?;
        self.conn
            .query_drop(format!(
                "SET SESSION {}",
                ddl::restore(ddl, &dialect).join(", ")
            ))
            .await
            .map_err(lost)?;
        let (actual, message) = match result {
            Ok(()) => (0, String::from("success")),
            Err(e) => match server_code(&e) {
                Some(code) => (code, format!("error {code}: {e}")),
                None => return Err(ApplyError::Lost(e.to_string())),
            },
        };
        let check_catalog =
            retrying && actual != ddl.error_code && ddl::may_have_been_applied(actual);
        // Several statements: which of them ran before the restart cannot
        // be told one by one, only that the transaction's catalog moved.
        let catalog_moved = check_catalog && self.retry_catalog_moved;
        let verdict = ddl::verdict(ddl, actual, catalog_moved);
        let sql = ddl.sql_text();
        match verdict {
            Verdict::Done => tracing::info!(position = %pos, sql = %sql, "applied statement"),
            Verdict::SameError => tracing::info!(
                position = %pos, sql = %sql, code = actual,
                "applied statement; it ended with the same error as on the primary"
            ),
            Verdict::DroppedListed => tracing::warn!(
                position = %pos, sql = %sql, primary = ddl.error_code, replica = actual,
                "applied DROP; some listed objects existed on one side only, none exists on either now"
            ),
            Verdict::AppliedBeforeRestart => tracing::warn!(
                position = %pos, sql = %sql, code = actual,
                "statement had been applied before the restart (its catalog changed since then); continuing"
            ),
            Verdict::Differs => {
                let expected = match ddl.error_code {
                    0 => "success".to_string(),
                    code => format!("error {code}"),
                };
                let mut reason = format!(
                    "on the primary it ended with {expected}, on the replica with {message}"
                );
                if let Some(db) = db_absent {
                    reason.push_str(&format!(
                        " (its default database `{db}` does not exist on the replica, so it ran without one)"
                    ));
                }
                if check_catalog {
                    reason.push_str(match self.pending_fingerprint {
                        Some(_) => ". It was being applied when the slave stopped, and it fails for real: \
                                   the catalog it changes is as it was before its first attempt, so that \
                                   attempt had not applied it",
                        None => ". It was being applied when the slave stopped, and the marker of that \
                                attempt has no catalog fingerprint (an older rowcast wrote it), so whether \
                                it was applied cannot be told",
                    });
                }
                reason.push_str(
                    ". The replica's schema differs from the primary's; the checkpoint was not moved. \
                     Make the objects the statement names on the replica match the primary's as they were \
                     before it (or re-seed the slave with --resnapshot), then restart the slave",
                );
                return Err(ddl_err(reason));
            }
        }
        Ok(verdict)
    }

    /// Makes the statement's default database the session's, as a native
    /// replica does. One the replica lacks (`DROP DATABASE IF EXISTS x`,
    /// `CREATE OR REPLACE DATABASE x` are logged with `x` as theirs) leaves
    /// the session without a default database, as does a statement logged
    /// without one; returns the absent database's name.
    async fn use_database(
        &mut self,
        ddl: &Ddl,
        pos: &SourcePosition,
    ) -> Result<Option<String>, ApplyError> {
        let mut absent = None;
        if let Some(db) = &ddl.database {
            match self
                .conn
                .query_drop(format!("USE {}", sql::ident(db)))
                .await
            {
                Ok(()) => return Ok(None),
                Err(e) if server_code(&e) == Some(ER_BAD_DB_ERROR) => {
                    tracing::info!(position = %pos, database = %db, "the statement's default database does not exist on the replica; running it without one");
                    absent = Some(db.clone());
                }
                Err(e) => {
                    return Err(match server_code(&e) {
                        Some(_) => ApplyError::Ddl {
                            position: pos.to_string(),
                            sql: ddl.sql_text().chars().take(300).collect(),
                            reason: format!(
                                "cannot use its default database `{db}` on the replica: {e}"
                            ),
                        },
                        None => ApplyError::Lost(e.to_string()),
                    })
                }
            }
        }
        let current: Option<Option<String>> = self
            .conn
            .query_first("SELECT DATABASE()")
            .await
            .map_err(|e| ApplyError::Lost(e.to_string()))?;
        if current.flatten().is_some() {
            // A session cannot leave its default database by a statement;
            // COM_CHANGE_USER without one can. It resets the session too.
            self.conn
                .change_user(mysql_async::ChangeUserOpts::default().with_db_name(None))
                .await
                .map_err(|e| ApplyError::Lost(e.to_string()))?;
            self.relock().await?;
            self.conn
                .query_drop(SESSION_SETUP)
                .await
                .map_err(|e| sql_error(pos, e))?;
            self.replay_format = None;
        }
        Ok(absent)
    }
}
