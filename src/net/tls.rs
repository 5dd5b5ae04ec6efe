//! TLS between slaves and master (rustls, ring provider): the master
//! presents `--tls-cert/--tls-key`; a slave trusts `--tls-ca`; with
//! `--tls-client-ca` on the master, slaves must present a certificate
//! signed by it (mutual TLS).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {reason}")]
    Read {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("{path} holds no {what}")]
    Empty { what: &'static str, path: String },
    #[error("TLS configuration is invalid: {0}")]
    Config(String),
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |reason: String| TlsError::Read {
        what: "certificates",
        path: path.display().to_string(),
        reason,
    };
    let data = std::fs::read(path).map_err(|e| read(e.to_string()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &data[..])
        .collect::<Result<_, _>>()
        .map_err(|e| read(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what: "PEM certificate",
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = std::fs::read(path).map_err(|e| TlsError::Read {
        what: "private key",
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    rustls_pemfile::private_key(&mut &data[..])
        .map_err(|e| TlsError::Read {
            what: "private key",
            path: path.display().to_string(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| TlsError::Empty {
            what: "PEM private key",
            path: path.display().to_string(),
        })
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs(ca)? {
        store.add(c).map_err(|e| TlsError::Config(e.to_string()))?;
    }
    Ok(store)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn acceptor(
    cert: &Path,
    key_path: &Path,
    client_ca: Option<&Path>,
) -> Result<TlsAcceptor, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs(cert)?, key(key_path)?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

pub fn connector(ca: &Path, client: Option<(&Path, &Path)>) -> Result<TlsConnector, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(ca)?);
    let config = match client {
        Some((cert, k)) => builder
            .with_client_auth_cert(certs(cert)?, key(k)?)
            .map_err(|e| TlsError::Config(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The name to check the master's certificate against: the host of
/// `HOST:PORT` (an IP address or a DNS name).
pub fn server_name(addr: &str) -> Result<ServerName<'static>, TlsError> {
    let host = match addr.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    };
    ServerName::try_from(host.to_string())
        .map_err(|e| TlsError::Config(format!("`{host}` is not a valid server name: {e}")))
}

/// TLS settings of a client (slave or `status`).
#[derive(Clone)]
pub struct ClientTls {
    pub connector: TlsConnector,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

/// Why a client could not open a connection to a master.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing answered, or the connection was refused: worth a retry.
    #[error("{0}")]
    Tcp(String),
    /// The TLS handshake failed: a retry will fail the same way.
    #[error(
        "TLS handshake failed: {0}; check --tls-ca (and that the master runs with --tls-cert)"
    )]
    Tls(String),
}

/// Connects to a master at `addr`, over TLS when `tls` is given.
pub async fn connect(
    addr: &str,
    tls: Option<&ClientTls>,
    limit: usize,
) -> Result<
    (
        crate::net::connection::FrameReader,
        crate::net::connection::FrameWriter,
    ),
    ConnectError,
> {
    use std::time::Duration;
    let socket = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|_| ConnectError::Tcp("no answer within 10s".into()))?
    .map_err(|e| ConnectError::Tcp(e.to_string()))?;
    let _ = socket.set_nodelay(true);
    match tls {
        None => Ok(crate::net::connection::split(socket, limit)),
        Some(t) => {
            let name = server_name(addr).map_err(|e| ConnectError::Tls(e.to_string()))?;
            let stream =
                tokio::time::timeout(Duration::from_secs(10), t.connector.connect(name, socket))
                    .await
                    .map_err(|_| {
                        ConnectError::Tls(
                            "no TLS answer within 10s (does the master use TLS?)".into(),
                        )
                    })?
                    .map_err(|e| ConnectError::Tls(e.to_string()))?;
            Ok(crate::net::connection::split(stream, limit))
        }
    }
}
