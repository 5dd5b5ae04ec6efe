//! The client side of `rowcast status`: asks a master for its
//! [`MasterStatus`] over the rowcast port.

use std::time::Duration;

use crate::net::tls::ClientTls;
use crate::net::wire::{self, MasterMessage, MasterStatus, SlaveMessage};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot reach the master at {addr}: {reason}; is `rowcast master` running with --listen {addr}?")]
    Unreachable { addr: String, reason: String },
    #[error("{addr} is not a rowcast master: {what}")]
    NotAMaster { addr: String, what: String },
    #[error("master {addr} refused: {message}")]
    Refused { addr: String, message: String },
}

pub async fn fetch(
    addr: &str,
    token: Option<&[u8]>,
    tls: Option<&ClientTls>,
) -> Result<MasterStatus, StatusError> {
    let unreachable = |reason: String| StatusError::Unreachable {
        addr: addr.to_string(),
        reason,
    };
    let (mut reader, mut writer) = crate::net::tls::connect(addr, tls, 64 << 20)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let mut greeting = [0u8; wire::GREETING_LEN];
    tokio::time::timeout(
        Duration::from_secs(10),
        reader.read_exact_raw(&mut greeting),
    )
    .await
    .map_err(|_| StatusError::NotAMaster {
        addr: addr.into(),
        what: "no greeting within 10s".into(),
    })?
    .map_err(|e| unreachable(e.to_string()))?;
    if &greeting[..8] != wire::MAGIC {
        return Err(StatusError::NotAMaster {
            addr: addr.into(),
            what: wire::describe_foreign_greeting(&greeting),
        });
    }
    let nonce = match reader
        .read_message_timeout::<MasterMessage>(Duration::from_secs(10))
        .await
    {
        Ok(Some(MasterMessage::Challenge { nonce, .. })) => nonce,
        other => {
            return Err(StatusError::NotAMaster {
                addr: addr.into(),
                what: format!("no challenge after the greeting ({other:?})"),
            })
        }
    };
    let auth = token.map(|t| crate::net::auth::respond(t, &nonce, "status"));
    writer
        .send(&SlaveMessage::StatusRequest { auth })
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    match reader
        .read_message_timeout::<MasterMessage>(Duration::from_secs(30))
        .await
    {
        Ok(Some(MasterMessage::Status(s))) => Ok(s),
        Ok(Some(MasterMessage::Error { message, .. })) => Err(StatusError::Refused {
            addr: addr.into(),
            message,
        }),
        Ok(other) => Err(StatusError::NotAMaster {
            addr: addr.into(),
            what: format!("unexpected answer {other:?}"),
        }),
        Err(e) => Err(unreachable(e.to_string())),
    }
}
