//! The operator's HTTP endpoint on `--metrics HOST:PORT`, for master and
//! slave: `/metrics` (Prometheus text, [`crate::ops::metrics`]),
//! `/healthz` (200 `ok` while the process is up), `/readyz` (200 `ready`,
//! or 503 with a one-line reason: [`crate::ops::health`]) and `/status`
//! (JSON: a master's `MasterStatus`, as `rowcast status --json`, or a
//! slave's own view). Anything else is 404; a method other than GET or
//! HEAD is 405.
//!
//! Plain HTTP/1.x, one request per connection (`Connection: close`), a
//! hand-written request-line parser: enough for Prometheus, kubelet probes
//! and curl. A client gets [`REQUEST_TIMEOUT`] to send its request head of
//! at most [`MAX_REQUEST`] bytes, and as long to take the answer; at most
//! [`MAX_CONNECTIONS`] are served at once and the rest are closed at once,
//! so garbage, a slow client or a flood cannot hold the server.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::ops::metrics::Metrics;

/// Time a client has to send its request head, and again to take the
/// answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read (request line and headers).
pub const MAX_REQUEST: usize = 8 << 10;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;

/// A boxed future (no async traits on this toolchain's stable path).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a process says of itself on `/readyz` and `/status`.
pub trait Probe: Send + Sync + 'static {
    /// Ready (200), or the one-line reason why not (503).
    fn readiness(&self) -> BoxFuture<'_, Result<(), String>>;
    /// The `/status` document, as JSON text (pretty, fields in their
    /// declared order: for a master the very text of `rowcast status
    /// --json`).
    fn status(&self) -> BoxFuture<'_, String>;
    /// Brings gauges that are computed on demand up to date before
    /// `/metrics` is rendered.
    fn refresh(&self, _metrics: &Metrics) {}
}

/// The endpoint's state: the metrics from the start, the probe once the
/// process knows enough to answer (until then `/readyz` and `/status`
/// say it is starting).
pub struct Endpoint {
    metrics: Arc<Metrics>,
    role: &'static str,
    probe: OnceLock<Arc<dyn Probe>>,
}

impl Endpoint {
    pub fn new(metrics: Arc<Metrics>, role: &'static str) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            metrics,
            role,
            probe: OnceLock::new(),
        })
    }

    /// From now on `/readyz` and `/status` ask `probe`.
    pub fn set_probe(&self, probe: Arc<dyn Probe>) {
        let _ = self.probe.set(probe);
    }

    /// The answer to `request` (its head): status code, content type,
    /// body.
    async fn answer(&self, request: &[u8]) -> Response {
        let (method, path) = match parse_request_line(request) {
            Ok(r) => r,
            Err(why) => return Response::text(400, why),
        };
        if method != "GET" && method != "HEAD" {
            return Response::text(405, "only GET and HEAD are served");
        }
        let path = path.split(['?', '#']).next().unwrap_or("");
        let probe = self.probe.get();
        let mut response = match path {
            "/metrics" => {
                let ready = match probe {
                    Some(p) => {
                        p.refresh(&self.metrics);
                        p.readiness().await.is_ok()
                    }
                    None => false,
                };
                self.metrics.ready.set(u64::from(ready));
                Response {
                    code: 200,
                    content_type: "text/plain; version=0.0.4; charset=utf-8",
                    body: self.metrics.render(self.role).into_bytes(),
                    head_only: false,
                }
            }
            "/healthz" => Response::text(200, "ok"),
            "/readyz" => match probe {
                None => Response::text(503, "starting"),
                Some(p) => match p.readiness().await {
                    Ok(()) => Response::text(200, "ready"),
                    Err(why) => Response::text(503, &why),
                },
            },
            "/status" => match probe {
                None => Response::text(503, "starting"),
                Some(p) => {
                    let mut body = p.status().await.into_bytes();
                    body.push(b'\n');
                    Response {
                        code: 200,
                        content_type: "application/json",
                        body,
                        head_only: false,
                    }
                }
            },
            _ => Response::text(404, "not found: try /metrics, /healthz, /readyz or /status"),
        };
        if method == "HEAD" {
            response.head_only = true;
        }
        response
    }
}

struct Response {
    code: u16,
    content_type: &'static str,
    body: Vec<u8>,
    head_only: bool,
}

impl Response {
    fn text(code: u16, body: &str) -> Response {
        Response {
            code,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n").into_bytes(),
            head_only: false,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let reason = match self.code {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            431 => "Request Header Fields Too Large",
            _ => "Service Unavailable",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
            self.code,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// `METHOD SP PATH SP HTTP/1.x` from the first line of `head`.
fn parse_request_line(head: &[u8]) -> Result<(&str, &str), &'static str> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|_| "the request line is not text")?;
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(path), Some(version), None)
            if !method.is_empty()
                && method.bytes().all(|b| b.is_ascii_uppercase())
                && path.starts_with('/')
                && version.starts_with("HTTP/1.") =>
        {
            Ok((method, path))
        }
        _ => Err("not an HTTP/1.x request line (METHOD /path HTTP/1.1)"),
    }
}

/// Where the request head ends (after the blank line), if it has.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
}

/// Reads a request head: `Err` with the answer to give instead.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, Response> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            if let Some(end) = head_end(&buf) {
                buf.truncate(end);
                return Ok(());
            }
            if buf.len() > MAX_REQUEST {
                return Err(Response::text(431, "request head too large"));
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    // Closed early: answer what came, if a request line did.
                    return if buf.contains(&b'\n') {
                        Ok(())
                    } else {
                        Err(Response::text(400, "incomplete request"))
                    };
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
        Err(_) => Err(Response::text(408, "request not received in time")),
        Ok(Err(r)) => Err(r),
        Ok(Ok(())) => Ok(buf),
    }
}

async fn handle(endpoint: Arc<Endpoint>, mut stream: TcpStream) {
    let response = match read_head(&mut stream).await {
        Ok(head) => endpoint.answer(&head).await,
        Err(r) => r,
    };
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let _ = stream.write_all(&response.bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
    // Closing with unread input would reset the connection, and the
    // client could lose the answer (a refused oversized head, say): read
    // a little more, briefly, until it closes.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut sink = [0u8; 4096];
        let mut left = 64usize << 10;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Binds `addr` and serves the endpoint on its own task until the process
/// ends.
pub async fn serve(addr: &str, endpoint: Arc<Endpoint>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    endpoint.metrics.mark_served();
    tracing::info!(%addr, "metrics and health at http://{addr}/metrics, /healthz, /readyz, /status");
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(cause = %e, "metrics endpoint cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                // Busy with others: this one is closed at once.
                drop(stream);
                continue;
            };
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                handle(endpoint, stream).await;
                drop(slot);
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_parsed_strictly() {
        assert_eq!(
            parse_request_line(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(("GET", "/readyz"))
        );
        assert_eq!(
            parse_request_line(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Ok(("HEAD", "/metrics?x=1"))
        );
        for bad in [
            &b"\x16\x03\x01\x02\x00\x01"[..],
            b"GET\r\n\r\n",
            b"GET readyz HTTP/1.1\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
        ] {
            assert!(parse_request_line(bad).is_err(), "{bad:?}");
        }
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost"), None);
    }

    struct Fixed(Result<(), String>);

    impl Probe for Fixed {
        fn readiness(&self) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(async move { self.0.clone() })
        }
        fn status(&self) -> BoxFuture<'_, String> {
            Box::pin(async { r#"{"state": "streaming"}"#.to_string() })
        }
    }

    #[tokio::test]
    async fn routes_answer_by_path_and_method() {
        let e = Endpoint::new(Metrics::new(), "slave");
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\n\r\n").into_bytes();
        assert_eq!(e.answer(&get("/readyz")).await.code, 503);
        assert_eq!(e.answer(&get("/healthz")).await.code, 200);
        e.set_probe(Arc::new(Fixed(Err("seeding: copying".into()))));
        let r = e.answer(&get("/readyz")).await;
        assert_eq!(
            (r.code, r.body.as_slice()),
            (503, &b"seeding: copying\n"[..])
        );
        let m = e.answer(&get("/metrics")).await;
        assert!(String::from_utf8(m.body)
            .unwrap()
            .contains("rowcast_ready{role=\"slave\"} 0"));
        assert_eq!(e.answer(&get("/nope")).await.code, 404);
        assert_eq!(e.answer(b"POST /readyz HTTP/1.1\r\n\r\n").await.code, 405);
        assert_eq!(e.answer(b"\x00\x01garbage\r\n\r\n").await.code, 400);
        let head = e.answer(b"HEAD /healthz HTTP/1.1\r\n\r\n").await.bytes();
        assert!(String::from_utf8(head).unwrap().ends_with("\r\n\r\n"));
        let s = e.answer(&get("/status")).await;
        let v: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
        assert_eq!(v["state"], "streaming");
    }
}
