//! Network namespaces with veth pairs to the root namespace, for the
//! network-fault tests: a process runs inside (`ip netns exec`), and a
//! link is partitioned by setting its namespace end down or by an
//! iptables DROP inside the namespace, then healed.
//!
//! Names are unique per test run (process id and a counter) and
//! everything is removed on drop, also when the test panics. A refused
//! `ip netns add` (no root, no iproute2) is a loud failure, never a skip:
//! `scripts/test` runs as root and installs iproute2 and iptables.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e} (apt-get install iproute2 iptables)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(program: &str, args: &[&str]) {
    run(program, args).unwrap_or_else(|e| panic!("{e}"));
}

/// One veth pair: `host` in the root namespace, `inner` in the namespace,
/// each with an address of a /30 of its own.
#[derive(Debug, Clone)]
pub struct Veth {
    pub host: String,
    pub inner: String,
    pub host_ip: Ipv4Addr,
    pub inner_ip: Ipv4Addr,
}

/// How a link is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// `ip link set <inner> down` inside the namespace.
    LinkDown,
    /// iptables DROP of everything in and out of the inner end.
    Drop,
}

pub struct Netns {
    pub name: String,
    veths: Vec<Veth>,
}

impl Netns {
    /// Creates a namespace with its loopback up; panics with the reason if
    /// the kernel or `ip` refuses.
    pub fn new(tag: &str) -> Netns {
        let k = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("rowcast-{}-{k}-{tag}", std::process::id());
        if let Err(e) = run("ip", &["netns", "add", &name]) {
            panic!(
                "cannot create network namespace {name}: {e}. The network-fault tests need root \
                 and iproute2 (scripts/test installs it); they do not skip"
            );
        }
        let ns = Netns {
            name,
            veths: Vec::new(),
        };
        ns.exec_must(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace; panics if it fails.
    pub fn exec_must(&self, cmd: &[&str]) {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(cmd);
        must("ip", &args);
    }

    /// A new veth pair between the root namespace and this one.
    pub fn add_veth(&mut self) -> Veth {
        let k = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        // Interface names are at most 15 bytes.
        let host = format!("rc{}v{k}h", pid % 100_000);
        let inner = format!("rc{}v{k}n", pid % 100_000);
        // 10.<200 + pid%50>.<k>.0/30: private, and apart from eth0's range.
        let a = 200 + (pid % 50) as u8;
        let b = (k % 250) as u8;
        let host_ip = Ipv4Addr::new(10, a, b, 1);
        let inner_ip = Ipv4Addr::new(10, a, b, 2);
        must(
            "ip",
            &["link", "add", &host, "type", "veth", "peer", "name", &inner],
        );
        let veth = Veth {
            host: host.clone(),
            inner: inner.clone(),
            host_ip,
            inner_ip,
        };
        // Recorded before anything else can fail, so drop removes it.
        self.veths.push(veth.clone());
        must("ip", &["link", "set", &inner, "netns", &self.name]);
        must(
            "ip",
            &["addr", "add", &format!("{host_ip}/30"), "dev", &host],
        );
        must("ip", &["link", "set", &host, "up"]);
        self.exec_must(&[
            "ip",
            "addr",
            "add",
            &format!("{inner_ip}/30"),
            "dev",
            &inner,
        ]);
        self.exec_must(&["ip", "link", "set", &inner, "up"]);
        veth
    }

    /// A command to run inside the namespace (`ip netns exec` execs it,
    /// so the child's pid is the program's own).
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Spawns `program args` inside, stdout discarded, stderr to `log`.
    pub fn spawn(&self, program: &Path, args: &[&str], log: &Path) -> Child {
        self.command(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} in {}: {e}", program.display(), self.name))
    }

    pub fn partition(&self, veth: &Veth, how: Partition) {
        match how {
            Partition::LinkDown => self.exec_must(&["ip", "link", "set", &veth.inner, "down"]),
            Partition::Drop => {
                self.exec_must(&["iptables", "-I", "INPUT", "-i", &veth.inner, "-j", "DROP"]);
                self.exec_must(&["iptables", "-I", "OUTPUT", "-o", &veth.inner, "-j", "DROP"]);
            }
        }
    }

    pub fn heal(&self, veth: &Veth, how: Partition) {
        match how {
            // The /30's route comes back with the link.
            Partition::LinkDown => self.exec_must(&["ip", "link", "set", &veth.inner, "up"]),
            Partition::Drop => {
                self.exec_must(&["iptables", "-D", "INPUT", "-i", &veth.inner, "-j", "DROP"]);
                self.exec_must(&["iptables", "-D", "OUTPUT", "-o", &veth.inner, "-j", "DROP"]);
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting one end of a pair deletes both; the namespace goes once
        // the processes in it are gone (callers drop those first).
        for v in &self.veths {
            let _ = run("ip", &["link", "del", &v.host]);
        }
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}
