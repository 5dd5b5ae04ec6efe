//! Where a slave's `--rewrite-db` rules live on its replica
//! (`rowcast.rewrite_db`), and the rule that keeps one history under one
//! name: a slave with a checkpoint runs only with the rules it applied
//! with ([`Applier::adopt_rewrite`]). `rowcast checksum` and `rowcast show`
//! read them with [`stored_rules`].

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::replica::apply::{Applier, ApplyError};
use crate::replica::apply_error::sql_error;
use crate::replica::db_rewrite::DbRewrite;
use crate::source::position::SourcePosition;

/// No such table: a replica whose `rowcast` schema predates the rules.
const ER_NO_SUCH_TABLE: u16 = 1146;

/// The rules stored on a replica, per slave name: `(slave, from, to)`,
/// ordered. Empty when the replica has none (or no `rowcast` schema).
pub async fn stored_rules(
    conn: &mut Conn,
) -> Result<Vec<(String, String, String)>, mysql_async::Error> {
    match conn
        .query(
            "SELECT slave_name, from_db, to_db FROM rowcast.rewrite_db \
             ORDER BY slave_name, from_db",
        )
        .await
    {
        Ok(rows) => Ok(rows),
        Err(mysql_async::Error::Server(e)) if e.code == ER_NO_SUCH_TABLE || e.code == 1049 => {
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

/// The rules of one slave name, as stored.
pub async fn rules_of(conn: &mut Conn, slave: &str) -> Result<DbRewrite, ApplyError> {
    let rules: Vec<(String, String)> = stored_rules(conn)
        .await
        .map_err(|e| sql_error(&SourcePosition::new("(rules)", 0), e))?
        .into_iter()
        .filter(|(s, _, _)| s == slave)
        .map(|(_, f, t)| (f, t))
        .collect();
    Ok(DbRewrite::new(&rules)?)
}

fn describe(rules: &DbRewrite) -> String {
    if rules.is_empty() {
        return "no --rewrite-db".into();
    }
    let mut r = rules
        .rules()
        .iter()
        .map(|(f, t)| format!("{f}={t}"))
        .collect::<Vec<_>>();
    r.sort();
    r.join(" --rewrite-db ")
}

impl Applier {
    /// Takes `rules` as this slave's: stored, for a slave without a
    /// checkpoint (a fresh replica, or one whose checkpoint
    /// `--resnapshot` just forgot); otherwise they must be the ones stored
    /// with its checkpoint (none stored: none were used), or it refuses to
    /// start.
    pub async fn adopt_rewrite(&mut self, rules: DbRewrite) -> Result<(), ApplyError> {
        let at = SourcePosition::new("(rules)", 0);
        if self.checkpoint().position.is_some() {
            let stored = rules_of(&mut self.conn, &self.name).await?;
            if !stored.same_as(&rules) {
                return Err(ApplyError::RewriteChanged {
                    name: self.name.clone(),
                    stored: describe(&stored),
                    given: describe(&rules),
                });
            }
        } else {
            let mut tx = self
                .conn
                .start_transaction(Default::default())
                .await
                .map_err(|e| sql_error(&at, e))?;
            tx.exec_drop(
                "DELETE FROM rowcast.rewrite_db WHERE slave_name = ?",
                (&self.name,),
            )
            .await
            .map_err(|e| sql_error(&at, e))?;
            for (from, to) in rules.rules() {
                tx.exec_drop(
                    "INSERT INTO rowcast.rewrite_db (slave_name, from_db, to_db) VALUES (?, ?, ?)",
                    (&self.name, from, to),
                )
                .await
                .map_err(|e| sql_error(&at, e))?;
            }
            tx.commit().await.map_err(|e| sql_error(&at, e))?;
        }
        if !rules.is_empty() {
            tracing::info!(rules = %describe(&rules), "databases renamed on this replica");
        }
        self.rewrite = Arc::new(rules);
        Ok(())
    }

    /// This slave's rules (empty without `--rewrite-db`).
    pub fn rewrite(&self) -> &Arc<DbRewrite> {
        &self.rewrite
    }
}
