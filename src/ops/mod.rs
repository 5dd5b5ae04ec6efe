//! What operators use besides the two processes: `rowcast status`
//! ([`status`]), `rowcast show` ([`show`]), `rowcast checksum`
//! ([`checksum`]), the HTTP endpoint on `--metrics` ([`http`]: Prometheus
//! [`metrics`], health and readiness by the rules of [`health`], status as
//! JSON) and the configuration file ([`config`]).

pub mod checksum;
pub mod config;
pub mod health;
pub mod http;
pub mod metrics;
pub mod show;
pub mod status;
