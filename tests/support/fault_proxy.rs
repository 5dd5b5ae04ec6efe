//! A small TCP fault proxy for the network-fault tests: this kernel has no
//! `netem` qdisc, so latency, held-back bytes, frozen connections and
//! resets in the middle of a frame are made here, between a process and
//! the server it talks to.
//!
//! Each accepted connection gets a reader and a writer thread per
//! direction; the reader stamps every chunk with the instant it may be
//! delivered (later stamps never overtake earlier ones, so the byte order
//! is kept) and the writer delivers it then. The fault is switched at run
//! time for the whole link ([`FaultProxy::set`]); a reset is armed per live
//! connection ([`FaultProxy::reset_mid_frame`]) or done at once
//! ([`FaultProxy::reset_all`]). Only plain threads and std sockets: the
//! proxy must keep working while the processes under test misbehave.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the proxy does to the bytes of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward at once.
    Pass,
    /// 100 ms ± 50 ms per direction, order kept.
    Latency,
    /// Every chunk read now is delivered this much later.
    Hold(Duration),
    /// Nothing is read or delivered either way, and no FIN is sent:
    /// the peers see a connection that is open and silent.
    Freeze,
}

/// Counters a test reports.
#[derive(Debug, Default)]
pub struct Stats {
    pub accepted: AtomicU64,
    pub resets: AtomicU64,
    pub bytes: AtomicU64,
}

struct Conn {
    id: u64,
    client: TcpStream,
    server: TcpStream,
    dead: AtomicBool,
    /// The next chunk either way is cut in half: the first half is
    /// delivered, then both sockets are reset.
    reset_armed: AtomicBool,
    /// Directions whose FIN was passed on; both: the connection is over.
    closed: AtomicU64,
    /// While frozen, the client closed or reset its end: it gave up on
    /// the silent connection by itself.
    abandoned: AtomicBool,
    /// Frozen on its own ([`FaultProxy::freeze_live`]).
    frozen: AtomicBool,
}

impl Conn {
    fn frozen(&self, shared: &Shared) -> bool {
        self.frozen.load(Ordering::SeqCst) || shared.fault() == Fault::Freeze
    }
}

impl Conn {
    /// Sends an RST to both peers at once, whatever other descriptors of
    /// the sockets the threads still hold.
    fn reset(&self) {
        if self.dead.swap(true, Ordering::SeqCst) {
            return;
        }
        for s in [&self.client, &self.server] {
            reset_socket(s);
        }
    }
}

/// SO_LINGER 0 and a disconnect (`connect(AF_UNSPEC)`, which makes Linux
/// abort an established connection with an RST), so the peer gets a reset
/// rather than a FIN.
fn reset_socket(s: &TcpStream) {
    let fd = s.as_raw_fd();
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: plain setsockopt/connect on a descriptor this process owns,
    // with properly sized arguments.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
        let mut addr: libc::sockaddr = std::mem::zeroed();
        addr.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
        libc::connect(
            fd,
            &addr,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        );
    }
    let _ = s.shutdown(Shutdown::Both);
}

/// The peer shut its side or reset, seen without reading the socket.
fn peer_closed(s: &TcpStream) -> bool {
    let mut pfd = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one pollfd for a descriptor this process owns, no waiting.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

struct Shared {
    target: SocketAddr,
    fault: Mutex<Fault>,
    conns: Mutex<Vec<Arc<Conn>>>,
    stop: AtomicBool,
    stats: Stats,
    rng: Mutex<u64>,
}

impl Shared {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap()
    }

    /// 100 ms ± 50 ms.
    fn latency(&self) -> Duration {
        let mut x = self.rng.lock().unwrap();
        // xorshift64: enough spread for jitter, no extra crate.
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        Duration::from_millis(50 + *x % 101)
    }
}

/// A listening proxy to one target; stops (and resets what it carries)
/// when dropped.
pub struct FaultProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<std::thread::JoinHandle<()>>,
}

const POLL: Duration = Duration::from_millis(20);

impl FaultProxy {
    /// Listens on `listen` (port 0 for any) and forwards to `target`.
    pub fn start(listen: &str, target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind(listen)
            .unwrap_or_else(|e| panic!("fault proxy cannot listen on {listen}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        let shared = Arc::new(Shared {
            target,
            fault: Mutex::new(Fault::Pass),
            conns: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            stats: Stats::default(),
            rng: Mutex::new(seed),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || accept_loop(listener, s));
        FaultProxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().unwrap() = fault;
    }

    pub fn fault(&self) -> Fault {
        self.shared.fault()
    }

    /// Freezes the connections open now, as [`Fault::Freeze`] does, while
    /// new ones pass (one flow lost in the network, the host still there).
    pub fn freeze_live(&self) -> usize {
        let live = self.live();
        for c in &live {
            c.frozen.store(true, Ordering::SeqCst);
        }
        live.len()
    }

    /// Every live connection resets in the middle of its next chunk.
    pub fn reset_mid_frame(&self) {
        for c in self.live() {
            c.reset_armed.store(true, Ordering::SeqCst);
        }
    }

    /// Resets every live connection now (how a test ends a freeze).
    pub fn reset_all(&self) -> usize {
        let live = self.live();
        for c in &live {
            c.reset();
            self.shared.stats.resets.fetch_add(1, Ordering::Relaxed);
        }
        live.len()
    }

    /// Connections open now.
    pub fn live_connections(&self) -> usize {
        self.live().len()
    }

    /// Ids of the connections open now.
    pub fn live_ids(&self) -> Vec<u64> {
        self.live().iter().map(|c| c.id).collect()
    }

    /// Every one of `ids` was closed by its client (during a freeze) or
    /// is gone.
    pub fn all_abandoned(&self, ids: &[u64]) -> bool {
        let live = self.live();
        ids.iter().all(|id| {
            live.iter()
                .find(|c| c.id == *id)
                .is_none_or(|c| c.abandoned.load(Ordering::SeqCst))
        })
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.stats.accepted.load(Ordering::SeqCst)
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    fn live(&self) -> Vec<Arc<Conn>> {
        let mut conns = self.shared.conns.lock().unwrap();
        conns.retain(|c| !c.dead.load(Ordering::SeqCst));
        conns.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.reset_all();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect_timeout(&shared.target, Duration::from_secs(3))
                else {
                    // The target is down: the client sees its connection
                    // close, as it would with the server itself.
                    continue;
                };
                shared.stats.accepted.fetch_add(1, Ordering::SeqCst);
                for s in [&client, &server] {
                    s.set_nodelay(true).unwrap();
                    s.set_read_timeout(Some(POLL)).unwrap();
                    s.set_write_timeout(Some(POLL)).unwrap();
                }
                let conn = Arc::new(Conn {
                    id: shared.stats.accepted.load(Ordering::SeqCst),
                    client,
                    server,
                    dead: AtomicBool::new(false),
                    reset_armed: AtomicBool::new(false),
                    closed: AtomicU64::new(0),
                    abandoned: AtomicBool::new(false),
                    frozen: AtomicBool::new(false),
                });
                shared.conns.lock().unwrap().push(conn.clone());
                for upstream in [true, false] {
                    let (tx, rx) = mpsc::channel();
                    let (c, s) = (conn.clone(), shared.clone());
                    std::thread::spawn(move || read_side(c, s, upstream, tx));
                    let (c, s) = (conn.clone(), shared.clone());
                    std::thread::spawn(move || write_side(c, s, upstream, rx));
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

enum Item {
    Bytes(Instant, Vec<u8>),
    /// The first half of a chunk, then the reset.
    ResetAfter(Instant, Vec<u8>),
    /// The source closed its side: pass the FIN on.
    Eof(Instant),
}

fn read_side(conn: Arc<Conn>, shared: Arc<Shared>, upstream: bool, tx: mpsc::Sender<Item>) {
    let src = if upstream { &conn.client } else { &conn.server };
    let mut buf = vec![0u8; 16 * 1024];
    let mut last = Instant::now();
    while !conn.dead.load(Ordering::SeqCst) && !shared.stop.load(Ordering::SeqCst) {
        if conn.frozen(&shared) {
            // Nothing is read, but a FIN or RST from the client shows.
            if upstream && peer_closed(src) {
                conn.abandoned.store(true, Ordering::SeqCst);
            }
            std::thread::sleep(POLL);
            continue;
        }
        let n = match (&*src).read(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => {
                conn.reset();
                return;
            }
        };
        let now = Instant::now();
        let at = match shared.fault() {
            Fault::Pass | Fault::Freeze => now,
            Fault::Latency => now + shared.latency(),
            Fault::Hold(d) => now + d,
        };
        last = last.max(at);
        if n == 0 {
            let _ = tx.send(Item::Eof(last));
            return;
        }
        let item = if conn.reset_armed.swap(false, Ordering::SeqCst) {
            Item::ResetAfter(last, buf[..n.div_ceil(2)].to_vec())
        } else {
            Item::Bytes(last, buf[..n].to_vec())
        };
        let reset = matches!(item, Item::ResetAfter(..));
        if tx.send(item).is_err() || reset {
            return;
        }
    }
}

fn write_side(conn: Arc<Conn>, shared: Arc<Shared>, upstream: bool, rx: mpsc::Receiver<Item>) {
    let dst = if upstream { &conn.server } else { &conn.client };
    let alive = || !conn.dead.load(Ordering::SeqCst) && !shared.stop.load(Ordering::SeqCst);
    // Waits until `at` and until the link is not frozen.
    let wait = |at: Instant| {
        while alive() && (Instant::now() < at || conn.frozen(&shared)) {
            std::thread::sleep(
                POLL.min(at.saturating_duration_since(Instant::now()))
                    .max(Duration::from_millis(1)),
            );
        }
        alive()
    };
    let write = |bytes: &[u8]| -> bool {
        let mut off = 0;
        while off < bytes.len() {
            if !alive() {
                return false;
            }
            if conn.frozen(&shared) {
                std::thread::sleep(POLL);
                continue;
            }
            match (&*dst).write(&bytes[off..]) {
                Ok(0) => return false,
                Ok(n) => {
                    off += n;
                    shared.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return false,
            }
        }
        true
    };
    while alive() {
        let item = match rx.recv_timeout(POLL) {
            Ok(item) => item,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        match item {
            Item::Bytes(at, bytes) => {
                if !wait(at) || !write(&bytes) {
                    conn.reset();
                    return;
                }
            }
            Item::ResetAfter(at, bytes) => {
                if wait(at) {
                    write(&bytes);
                }
                conn.reset();
                shared.stats.resets.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Item::Eof(at) => {
                if wait(at) {
                    let _ = dst.shutdown(Shutdown::Write);
                }
                if conn.closed.fetch_add(1, Ordering::SeqCst) == 1 {
                    conn.dead.store(true, Ordering::SeqCst);
                }
                return;
            }
        }
    }
}
