//! Everything that writes to a replica.
//!
//! The exactly-once applier: [`apply`] owns `Applier`, its commit
//! protocol (checkpoint, parts, the pending-DDL marker, held XA rows) and
//! its public API; [`apply_error`] its errors and how a server's answer is
//! classified; [`session_lock`] the server lock that lets one session at a
//! time apply for a slave name; [`skip`] the one transaction an operator
//! skips on purpose (`--skip-at`), on record. What runs inside its local transactions, each an
//! `impl Applier` of its own: `rows` (one change: the per-table plan
//! cache, statements or the replica's row-event applier), `positional`
//! (a schema without column names mapped onto the replica's table by
//! position, before any of the others sees it), `table_facts`
//! (what the replica's catalog says of a table, read once per plan),
//! `net_apply` (a batch's or part's net effect as multi-row statements),
//! `ddl_apply` (logged statements under the pending-DDL marker) and
//! `snapshot_load` (a snapshot's objects and rows).
//!
//! Pure parts they use: the SQL for one table ([`statements`]), the net
//! effect of a batch ([`net_effect`]), the session context and outcome of
//! a logged statement ([`ddl`]), the primary's own row events replayed
//! ([`replay`]), the packet size a transaction needs ([`packet_size`]);
//! and the catalog fingerprint that judges a retried DDL
//! ([`catalog_fingerprint`]) and the `rowcast` schema ([`migrations`]).

pub mod apply;
pub mod apply_error;
pub mod catalog_fingerprint;
pub mod db_rewrite;
pub mod ddl;
mod ddl_apply;
pub mod migrations;
mod net_apply;
pub mod net_effect;
pub mod packet_size;
mod positional;
pub mod replay;
pub mod rewrite_rules;
mod rows;
pub mod seed_gate;
pub mod seed_load;
pub mod seed_loaders;
pub mod session_lock;
pub mod skip;
mod snapshot_load;
pub mod statements;
mod table_facts;
