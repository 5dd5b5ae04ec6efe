//! `rowcast slave --skip-at POSITION`: skipping the one transaction the
//! replica cannot apply, on purpose and on record (what MySQL's
//! `sql_slave_skip_counter` does blindly by count, done here by name).
//!
//! A transaction is named by its position in the form [`skip_form`]
//! prints (the slave's apply error names it so): `FILE:OFFSET`, or
//! `FILE:OFFSET@EPOCH` after a failover. A large transaction sent in parts
//! is named by its first part (the one it starts with, where a skip must
//! begin); a two-phase XA transaction by its `XA COMMIT` (or `XA
//! ROLLBACK`), where its held rows are applied: skipping it drops them.
//!
//! **Invariant:** a skip moves the checkpoint past the transaction and
//! inserts its `rowcast.skipped` row (position, time, the error it had
//! stopped the slave with) in one local transaction, which holds nothing
//! else: so a crash never skips it twice nor loses the record, and a
//! restart with the same flag finds the position behind the checkpoint
//! and does nothing. A flag that names no transaction the slave meets is
//! never silently ignored: passing the position without meeting it, or
//! naming a part inside a transaction or an XA PREPARE, stops the slave
//! with both positions, and a failure before it says it was not reached.

use mysql_async::prelude::Queryable;

use crate::log::change::{Transaction, XaStep};
use crate::net::wire::Skipped;
use crate::replica::apply::{Applier, ApplyError};
use crate::replica::apply_error::sql_error;
use crate::source::position::{Gtid, SourcePosition};

/// The reason recorded when the skipped transaction had not stopped the
/// slave (an operator skipping, say, a statement they do not want).
const NOT_FAILED: &str = "skipped on purpose with --skip-at; it had not failed on this replica";

/// How `--skip-at` takes a position, and how errors name one for it.
pub fn skip_form(p: &SourcePosition) -> String {
    if p.epoch == 0 {
        format!("{}:{}", p.file, p.offset)
    } else {
        format!("{}:{}@{}", p.file, p.offset, p.epoch)
    }
}

/// Reads a `--skip-at` value: [`skip_form`], or a position as rowcast
/// prints it elsewhere (`epoch N FILE:OFFSET (gtid G)`).
pub fn parse_skip_at(text: &str) -> Result<SourcePosition, ApplyError> {
    let bad = || ApplyError::SkipUnreadable {
        text: text.to_string(),
    };
    let mut s = text.trim();
    let mut gtid = None;
    if let Some(i) = s.find(" (gtid ") {
        let g = s[i + 7..].trim().trim_end_matches(')');
        gtid = Some(g.parse::<Gtid>().map_err(|_| bad())?);
        s = s[..i].trim();
    }
    let mut epoch = 0;
    if let Some(rest) = s.strip_prefix("epoch ") {
        let (n, r) = rest.trim().split_once(' ').ok_or_else(bad)?;
        epoch = n.parse().map_err(|_| bad())?;
        s = r.trim();
    }
    if let Some((p, e)) = s.rsplit_once('@') {
        epoch = e.parse().map_err(|_| bad())?;
        s = p;
    }
    let (file, offset) = s.rsplit_once(':').ok_or_else(bad)?;
    let offset = offset.parse().map_err(|_| bad())?;
    if file.is_empty() || file.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(SourcePosition {
        epoch,
        file: file.to_string(),
        offset,
        gtid,
    })
}

/// What `--skip-at` makes of the next entry after the checkpoint.
fn verdict(
    skip: &SourcePosition,
    txn: &Transaction,
    first_part: Option<&SourcePosition>,
) -> Result<bool, ApplyError> {
    let here = &txn.position;
    match here.cmp_location(skip) {
        std::cmp::Ordering::Less => Ok(false),
        std::cmp::Ordering::Greater => Err(ApplyError::SkipMissed {
            skip: skip_form(skip),
            next: skip_form(here),
        }),
        std::cmp::Ordering::Equal => {
            if let (Some(want), Some(have)) = (&skip.gtid, &here.gtid) {
                if want != have {
                    return Err(ApplyError::SkipGtid {
                        skip: skip_form(skip),
                        want: want.to_string(),
                        have: have.to_string(),
                    });
                }
            }
            if txn.part > 0 {
                return Err(ApplyError::SkipInside {
                    skip: skip_form(skip),
                    first: first_part.map_or_else(|| "its first part".into(), skip_form),
                });
            }
            if let Some(XaStep::Prepare(xid)) = &txn.xa {
                return Err(ApplyError::SkipPrepare {
                    skip: skip_form(skip),
                    xid: xid.to_string(),
                });
            }
            Ok(true)
        }
    }
}

impl Applier {
    /// Takes the `--skip-at` flag (again after each connect: the
    /// checkpoint may have moved). A position the checkpoint is not
    /// before is a logged no-op: skipped already, or applied.
    pub fn set_skip(&mut self, text: Option<&str>) -> Result<(), ApplyError> {
        self.skip = None;
        let Some(text) = text else { return Ok(()) };
        let at = parse_skip_at(text)?;
        let form = skip_form(&at);
        let behind = self
            .checkpoint
            .position
            .as_ref()
            .is_some_and(|cp| !at.is_after(cp));
        if behind {
            match self.skipped.iter().find(|s| s.position == form) {
                Some(s) => tracing::info!(
                    skip_at = %form,
                    skipped_at = s.at,
                    "--skip-at: that transaction was skipped already (it is in rowcast.skipped); nothing to do, drop the flag"
                ),
                None => tracing::warn!(
                    skip_at = %form,
                    checkpoint = %self.checkpoint.position.as_ref().map(skip_form).unwrap_or_default(),
                    "--skip-at names a position the checkpoint is already past, and rowcast.skipped has no skip there: that transaction was applied, not skipped; nothing to do, drop the flag"
                ),
            }
            return Ok(());
        }
        tracing::warn!(skip_at = %form, "--skip-at: the transaction at this position will be skipped, not applied");
        self.skip = Some(at);
        Ok(())
    }

    /// The `--skip-at` position still to meet, in [`skip_form`].
    pub fn skip_pending(&self) -> Option<String> {
        self.skip.as_ref().map(skip_form)
    }

    /// Transactions this slave skipped on purpose, oldest first.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Whether a skip happened since the last call (status must hear it).
    pub fn take_skip_news(&mut self) -> bool {
        std::mem::take(&mut self.skip_news)
    }

    /// The position `--skip-at` takes for the transaction `txn` belongs
    /// to: a later part's is its first part's.
    pub fn skip_identity(&self, txn: &Transaction) -> SourcePosition {
        match &self.parts_first {
            Some(first) if txn.part > 0 => first.clone(),
            _ => txn.position.clone(),
        }
    }

    /// Whether `txn`, an entry after the checkpoint, is the one to skip;
    /// an error when the flag cannot mean what it says (see the module doc).
    pub(super) fn skip_verdict(&self, txn: &Transaction) -> Result<bool, ApplyError> {
        match &self.skip {
            None => Ok(false),
            Some(skip) => verdict(skip, txn, self.parts_first.as_ref()),
        }
    }

    /// Skips the transaction `identity` names, whose last entry is `txn`
    /// (sequence `seq`): its `rowcast.skipped` row and the checkpoint past
    /// it, in one local transaction of their own.
    pub(super) async fn skip_write(
        &mut self,
        seq: u64,
        txn: &Transaction,
        identity: &SourcePosition,
    ) -> Result<(), ApplyError> {
        let form = skip_form(identity);
        let pos = &txn.position;
        let result = async {
            let failed: Option<(Option<String>, Option<String>)> = self
                .conn
                .exec_first(
                    "SELECT failed_position, failed_reason FROM rowcast.checkpoint WHERE slave_name = ?",
                    (&self.name,),
                )
                .await
                .map_err(|e| sql_error(pos, e))?;
            let reason = match failed {
                Some((Some(p), Some(r))) if p == form => r,
                _ => NOT_FAILED.to_string(),
            };
            self.local("START TRANSACTION", pos).await?;
            self.conn
                .exec_drop(
                    "INSERT INTO rowcast.skipped \
                       (slave_name, position, source_epoch, source_file, source_offset, source_gtid, log_seq, reason) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        &self.name,
                        &form,
                        identity.epoch,
                        &identity.file,
                        identity.offset,
                        identity.gtid.as_ref().map(|g| g.to_string()),
                        seq,
                        &reason,
                    ),
                )
                .await
                .map_err(|e| sql_error(pos, e))?;
            self.write_checkpoint(seq, txn).await?;
            self.conn
                .exec_drop(
                    "UPDATE rowcast.checkpoint SET failed_position = NULL, failed_reason = NULL \
                     WHERE slave_name = ?",
                    (&self.name,),
                )
                .await
                .map_err(|e| sql_error(pos, e))?;
            self.local("COMMIT", pos).await?;
            Ok(reason)
        }
        .await;
        let reason = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = self.conn.query_drop("ROLLBACK").await;
                return Err(e);
            }
        };
        tracing::warn!(
            skip_at = %form,
            checkpoint = %skip_form(pos),
            seq,
            ddl = txn.is_ddl(),
            xa = txn.xa.is_some(),
            %reason,
            "skipped one transaction on purpose (--skip-at): the replica lacks its changes; recorded in rowcast.skipped"
        );
        self.skipped.push(Skipped {
            position: form,
            at: crate::net::serve::now_ms() / 1000,
            reason,
        });
        self.skip = None;
        self.skip_news = true;
        self.applied(seq, txn);
        Ok(())
    }

    /// Notes on the replica which transaction stopped the slave and why,
    /// so that a later `--skip-at` of it records the error it skips. Best
    /// effort: the slave is stopping anyway.
    pub async fn record_failure(&mut self, at: &str, reason: &str) {
        let result = self
            .conn
            .exec_drop(
                "UPDATE rowcast.checkpoint SET failed_position = ?, failed_reason = ? WHERE slave_name = ?",
                (at, reason, &self.name),
            )
            .await;
        if let Err(e) = result {
            tracing::debug!(cause = %e, "could not note the failure on the replica");
        }
    }
}

/// This slave's skips as `rowcast.skipped` holds them, oldest first.
pub(super) async fn load_skipped(
    conn: &mut mysql_async::Conn,
    name: &str,
) -> Result<Vec<Skipped>, mysql_async::Error> {
    let rows: Vec<(String, u64, String)> = conn
        .exec(
            "SELECT position, CAST(UNIX_TIMESTAMP(skipped_at) AS UNSIGNED), reason \
             FROM rowcast.skipped WHERE slave_name = ? ORDER BY id",
            (name,),
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|(position, at, reason)| Skipped {
            position,
            at,
            reason,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::change::Xid;

    fn txn(file: &str, offset: u64) -> Transaction {
        Transaction::local(SourcePosition::new(file, offset), Vec::new())
    }

    #[test]
    fn the_form_errors_print_is_the_form_the_flag_reads() {
        let mut p = SourcePosition::new("mariadb-bin.000002", 1234);
        assert_eq!(skip_form(&p), "mariadb-bin.000002:1234");
        assert_eq!(parse_skip_at(&skip_form(&p)).unwrap(), p);
        p.epoch = 3;
        assert_eq!(skip_form(&p), "mariadb-bin.000002:1234@3");
        assert_eq!(parse_skip_at(&skip_form(&p)).unwrap(), p);
        // As positions print elsewhere, GTID included.
        p.gtid = Some("0-1-17".parse().unwrap());
        assert_eq!(parse_skip_at(&p.to_string()).unwrap(), p);
        for bad in ["", "mariadb-bin.000002", "f:x", ":12", "f:1@x", "a b:1"] {
            assert!(parse_skip_at(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_named_transaction_is_skipped_and_passing_it_stops() {
        let skip = SourcePosition::new("b.000001", 500);
        assert!(!verdict(&skip, &txn("b.000001", 400), None).unwrap());
        assert!(verdict(&skip, &txn("b.000001", 500), None).unwrap());
        let missed = verdict(&skip, &txn("b.000002", 4), None).unwrap_err();
        let text = missed.to_string();
        assert!(
            text.contains("b.000001:500") && text.contains("b.000002:4"),
            "{text}"
        );
    }

    #[test]
    fn a_later_part_or_a_prepare_is_refused_naming_what_to_skip() {
        let skip = SourcePosition::new("b.000001", 500);
        let mut part = txn("b.000001", 500);
        part.part = 2;
        part.more = true;
        let first = SourcePosition::new("b.000001", 300);
        let e = verdict(&skip, &part, Some(&first)).unwrap_err().to_string();
        assert!(e.contains("b.000001:300"), "{e}");
        let mut prepare = txn("b.000001", 500);
        prepare.xa = Some(XaStep::Prepare(Xid {
            format_id: 1,
            gtrid: b"g".to_vec(),
            bqual: Vec::new(),
        }));
        let e = verdict(&skip, &prepare, None).unwrap_err().to_string();
        assert!(e.contains("XA COMMIT"), "{e}");
    }
}
