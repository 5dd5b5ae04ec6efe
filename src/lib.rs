//! rowcast: replicates a MySQL/MariaDB primary to live replicas through its
//! row-based binlog.
//!
//! The pipeline, one module per stage (see ARCHITECTURE.md):
//! - [`source`]: connects to the primary, checks its settings, opens the
//!   binlog stream; [`continuity`] tells a binlog that was reset under it.
//! - [`decode`]: binlog events → committed [`change::Transaction`]s
//!   ([`row_image`] reads the row images `mysql_common` misreads).
//! - [`filter`] and [`ddl`]: which databases, tables and statements are
//!   replicated.
//! - [`changelog`]: the master's durable, segmented change log.
//! - [`frame`], [`connection`], [`wire`]: the master–slave protocol.
//! - [`serve`]: the master's listener and per-slave stream; [`auth`] its
//!   shared-secret challenge-response.
//! - [`snapshot`]: the consistent copy that seeds a new slave; [`objects`]
//!   the triggers, routines, events and sequences it copies.
//! - [`apply`]: the slave's exactly-once applier; [`migrations`] creates
//!   its `rowcast` schema; [`ddl_session`] runs a logged statement in the
//!   primary's session context and judges its outcome;
//!   [`catalog_fingerprint`] tells a retried DDL applied before a crash
//!   from one that fails for real.
//! - [`verify`]: `rowcast checksum`, chunk checksums compared at the same
//!   source position.
//! - [`status`], [`show`], [`metrics`]: what operators look at.
//! - [`master`] and [`slave`] wire the stages into the two processes.
//!
//! Shared vocabulary: [`position`] (where in the binlog), [`change`] (the
//! change format), [`codec`] (the only place that encodes it), [`sql`]
//! (quoting and parameter values), [`statements`] (the SQL for one table),
//! [`status_vars`] (a query event's session context).
//!
//! Errors are `thiserror` enums per module, each able to say whether a
//! retry can help; only the supervisor loops in `master` and `slave` retry.

pub mod apply;
pub mod auth;
pub mod catalog_fingerprint;
pub mod change;
pub mod changelog;
pub mod codec;
pub mod compact;
pub mod config;
pub mod connection;
pub mod continuity;
pub mod ddl;
pub mod ddl_session;
pub mod decode;
pub mod filter;
pub mod frame;
pub mod gtid_set;
pub mod jetstream;
pub mod master;
pub mod metrics;
pub mod migrations;
pub mod objects;
pub mod packet_size;
pub mod position;
pub mod replay;
pub mod row_image;
pub mod serve;
pub mod show;
pub mod slave;
pub mod snapshot;
pub mod source;
pub mod sql;
pub mod statements;
pub mod status;
pub mod status_vars;
pub mod tls;
pub mod verify;
pub mod wire;
