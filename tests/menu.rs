//! The interactive menu, driven through a pseudo-terminal as a person
//! would: answer the set-up questions, create a database and a table and
//! write rows from the master's menu, and see them arrive on a slave.

mod support;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

struct Pty {
    writer: File,
    seen: Arc<Mutex<String>>,
    /// How much of `seen` earlier expectations consumed.
    pos: usize,
    child: std::process::Child,
}

impl Pty {
    fn spawn(args: &[&str], dir: &std::path::Path) -> Pty {
        let (mut master, mut slave) = (0, 0);
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty");
        let slave_fd = unsafe { OwnedFd::from_raw_fd(slave) };
        let child = Command::new(ROWCAST)
            .args(args)
            .current_dir(dir)
            .env_remove("ROWCAST_SOURCE")
            .env_remove("ROWCAST_TARGET")
            .stdin(Stdio::from(slave_fd.try_clone().unwrap()))
            .stdout(Stdio::from(slave_fd.try_clone().unwrap()))
            .stderr(Stdio::from(slave_fd))
            .spawn()
            .unwrap();
        let reader = unsafe { File::from_raw_fd(master) };
        let writer = reader.try_clone().unwrap();
        let seen = Arc::new(Mutex::new(String::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            let mut reader = reader;
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Pty {
            writer,
            seen,
            pos: 0,
            child,
        }
    }

    /// Waits for `text` after what earlier calls consumed.
    fn expect(&mut self, text: &str) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            let seen = self.seen.lock().unwrap();
            if let Some(i) = seen[self.pos..].find(text) {
                self.pos += i + text.len();
                return;
            }
            drop(seen);
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "did not see {text:?}; screen:\n{}",
            self.seen.lock().unwrap()
        );
    }

    fn answer(&mut self, prompt: &str, line: &str) {
        self.expect(prompt);
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn master_menu_writes_reach_a_slave() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    let work = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut m = Pty::spawn(&["master"], work.path());
    m.expect("interactive set-up");
    m.answer("host [127.0.0.1]", "");
    m.answer("port [3306]", &primary.port.to_string());
    m.answer("user [root]", "");
    m.answer("password", "");
    m.answer("Listen for slaves on [127.0.0.1:9999]", &listen);
    m.answer("Change log directory", "");
    m.expect("master running");

    let _slave = Rowcast::slave(&listen, &replica, "menu-slave");
    assert!(wait_until(CONVERGE, || !slave_position(
        &replica,
        "menu-slave"
    )
    .is_empty()));

    m.answer(">", "1");
    m.answer("Database name", "menudb");
    m.expect("done.");
    m.answer(">", "3");
    m.answer("Table (db.table)", "menudb.people");
    m.answer("Columns", "id INT PRIMARY KEY, name VARCHAR(20)");
    m.expect("done.");
    m.answer(">", "5");
    m.answer("Table (db.table)", "menudb.people");
    m.answer("Values", "1, 'ann'");
    m.expect("done.");
    m.answer(">", "5");
    m.answer("Table (db.table)", "menudb.people");
    m.answer("Values", "2, 'bob'");
    m.expect("done.");
    m.answer(">", "6");
    m.answer("Table (db.table)", "menudb.people");
    m.answer("Set", "name = 'bobby'");
    m.answer("Where", "id = 2");
    m.expect("done.");
    m.answer(">", "7");
    m.answer("Table (db.table)", "menudb.people");
    m.answer("Where", "id = 1");
    m.expect("done.");
    wait_caught_up(&primary, &replica, "menu-slave");
    assert_eq!(
        replica.sql("SELECT id, name FROM menudb.people"),
        "2\tbobby\n"
    );
    m.answer(">", "8");
    m.expect("menu-slave");
    m.answer(">", "0");
    m.expect("bye.");
    let status = m.child.wait().unwrap();
    assert!(status.success());
}

#[test]
fn slave_menu_shows_data_and_verifies() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql("CREATE DATABASE v; CREATE TABLE v.t (id INT PRIMARY KEY, s VARCHAR(10)); INSERT INTO v.t VALUES (1, 'one'), (2, 'two')");
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let work = tempfile::tempdir().unwrap();
    let mut s = Pty::spawn(&["slave"], work.path());
    s.answer("Master address [127.0.0.1:9999]", &listen);
    s.answer("host [127.0.0.1]", "");
    s.answer("port [3306]", &replica.port.to_string());
    s.answer("user [root]", "");
    s.answer("password", "");
    s.answer("Slave name", "tty");
    s.expect("slave `tty` running");
    assert!(wait_seeded(&replica, "tty"));
    s.answer(">", "3");
    s.answer("Table (db.table)", "v.t");
    s.expect("as of source position");
    s.expect("two");
    s.answer(">", "4");
    s.answer("host [127.0.0.1]", "");
    s.answer("port [3306]", &primary.port.to_string());
    s.answer("user [root]", "");
    s.answer("password", "");
    s.expect("replica equals the primary.");
    s.answer(">", "5");
    s.expect("tty");
    s.answer(">", "0");
    s.expect("bye.");
}
