//! A `nats-server` with small client limits (started by
//! [`Nats::start_with`]), and a TCP link between a client and it that a
//! test can cut.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::*;

impl Nats {
    /// A server whose largest message is `max_payload` bytes and which
    /// drops a client with more than `max_pending` bytes queued for it (a
    /// "slow consumer").
    pub fn start_with_limits(max_payload: usize, max_pending: usize) -> Nats {
        Nats::start_with(NatsLimits {
            max_payload: Some(max_payload),
            max_pending: Some(max_pending),
        })
    }
}

/// Forwards connections from a local port to `127.0.0.1:target`;
/// [`Link::cut`] closes every open one (as a network failure would; the
/// client's reconnects go through again).
pub struct Link {
    pub port: u16,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
}

impl Link {
    pub fn to(target: u16) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let frozen = Arc::new(AtomicBool::new(false));
        let (open2, stop2, frozen2) = (open.clone(), stop.clone(), frozen.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                {
                    let mut o = open2.lock().unwrap();
                    o.push(client.try_clone().unwrap());
                    o.push(server.try_clone().unwrap());
                }
                for (mut from, mut to, hold) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        None,
                    ),
                    (server, client, Some(frozen2.clone())),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            while hold.as_ref().is_some_and(|f| f.load(Ordering::SeqCst)) {
                                std::thread::sleep(std::time::Duration::from_millis(20));
                            }
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Link {
            port,
            open,
            stop,
            frozen,
        }
    }

    /// Stops (or resumes) passing anything from the server to clients,
    /// without closing a connection: the client sees silence, no error.
    pub fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }

    /// Closes every connection open through the link; returns how many.
    pub fn cut(&self) -> usize {
        let mut o = self.open.lock().unwrap();
        for s in o.iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let n = o.len() / 2;
        o.clear();
        n
    }

    pub fn url(&self, stream: &str) -> String {
        format!("nats://127.0.0.1:{}/{stream}", self.port)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
