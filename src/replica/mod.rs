//! Everything that writes to a replica: the exactly-once applier
//! ([`apply`]) with its statements for one table ([`statements`]), the net
//! effect of a batch ([`net_effect`]), statements logged as text run in the
//! primary's session context ([`ddl`]), the primary's own row events
//! replayed ([`replay`]), the packet size a transaction needs
//! ([`packet_size`]), the catalog fingerprint that judges a retried DDL
//! ([`catalog_fingerprint`]) and the `rowcast` schema ([`migrations`]).

pub mod apply;
pub mod apply_error;
pub mod catalog_fingerprint;
pub mod ddl;
mod ddl_apply;
pub mod migrations;
mod net_apply;
pub mod net_effect;
pub mod packet_size;
pub mod replay;
mod rows;
mod snapshot_load;
pub mod statements;
mod table_facts;
