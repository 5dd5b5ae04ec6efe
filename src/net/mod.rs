//! The master–slave link: length-prefixed frames ([`frame`]) carrying
//! codec-encoded messages ([`wire`]) over a TCP or TLS ([`tls`])
//! [`connection`], the shared-secret challenge ([`auth`]), and the
//! master's listener with its per-slave streams ([`serve`]).

pub mod auth;
pub mod connection;
pub mod frame;
pub mod seed_serve;
pub mod serve;
pub mod tls;
pub mod wire;
