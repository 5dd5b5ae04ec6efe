//! rowcast: replicates a MySQL/MariaDB primary to live replicas through its
//! row-based binlog.
//!
//! The pipeline, one folder per stage (see ARCHITECTURE.md):
//! - [`source`]: the primary. Connections and settings, binlog positions
//!   and GTID sets, the decoder from binlog events to committed
//!   [`log::change::Transaction`]s, the filters, and the consistent
//!   snapshot that seeds a new slave.
//! - [`log`]: the change format, its codec, and the durable change log
//!   (segment files or NATS JetStream).
//! - [`net`]: the master–slave protocol and the master's listener.
//! - [`replica`]: the slave's exactly-once applier and what it needs.
//! - [`ops`]: status, show, checksum, the HTTP endpoint (metrics, health,
//!   readiness, status) and the configuration file.
//! - [`master`] and [`slave`] wire the stages into the two processes.
//!
//! [`sql`] (quoting and parameter values) is shared by the stages that
//! talk SQL to a server.
//!
//! Errors are `thiserror` enums per module, each able to say whether a
//! retry can help; only the supervisor loops in `master` and `slave` retry.

pub mod log;
pub mod master;
pub mod net;
pub mod ops;
pub mod replica;
pub mod slave;
pub mod source;
pub mod sql;
