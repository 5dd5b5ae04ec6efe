//! What operators use besides the two processes: `rowcast status`
//! ([`status`]), `rowcast show` ([`show`]), `rowcast checksum`
//! ([`checksum`]), the Prometheus metrics ([`metrics`]) and the
//! configuration file ([`config`]).

pub mod checksum;
pub mod config;
pub mod metrics;
pub mod show;
pub mod status;
