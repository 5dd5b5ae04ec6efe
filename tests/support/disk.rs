//! Small file systems for full-disk tests: a tmpfs mounted in a temp dir
//! (unmounted on drop, also when a test panics), a filler file that uses
//! up its space and is deleted to free it, and a MariaDB whose datadir
//! lives on one.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::MariaDb;

pub struct SmallDisk {
    mount: PathBuf,
    _dir: TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `mib` MiB. A refused mount fails the test: the
    /// full-disk tests run as root and are never skipped.
    pub fn mount(mib: u64) -> SmallDisk {
        let dir = tempfile::Builder::new()
            .prefix("rowcast-disk-")
            .tempdir()
            .unwrap();
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0755"),
                "tmpfs",
            ])
            .arg(&mount)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "cannot mount a {mib} MiB tmpfs on {} (the full-disk tests need root): {}",
            mount.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { mount, _dir: dir }
    }

    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// Bytes an unprivileged writer may still use.
    pub fn available(&self) -> u64 {
        let path = std::ffi::CString::new(self.mount.to_str().unwrap()).unwrap();
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
        assert_eq!(rc, 0, "statvfs {}", self.mount.display());
        st.f_bavail as u64 * st.f_frsize as u64
    }

    fn filler(&self) -> PathBuf {
        self.mount.join("filler")
    }

    /// Writes (more of) the filler file until at most `free` bytes are
    /// left; with 0 the disk is full to the last byte.
    pub fn fill_leaving(&self, free: u64) {
        let mut f = File::options()
            .create(true)
            .append(true)
            .open(self.filler())
            .unwrap();
        let chunk = vec![0xa5u8; 1 << 20];
        // Bounded: one pass of the disk's size in 1 MiB steps, then bytes.
        for _ in 0..4096 {
            let avail = self.available();
            if avail <= free {
                break;
            }
            let n = ((avail - free) as usize).min(chunk.len());
            match f.write(&chunk[..n]) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("writing the filler: {e}"),
            }
        }
        f.sync_all().unwrap();
        assert!(
            self.available() <= free,
            "the filler left {} bytes free, wanted at most {free}",
            self.available()
        );
    }

    /// Deletes the filler: the space it took is free again.
    pub fn free_filler(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.mount)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still has a file open there (a server a failing
            // test did not stop): detach it so the mount goes with it.
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
    }
}

impl MariaDb {
    /// A plain replica server whose datadir is on `disk` (its socket, log
    /// and tmpdir stay in a temp dir of their own). tmpfs has no O_DIRECT,
    /// so InnoDB flushes with fsync.
    pub fn replica_on(disk: &SmallDisk) -> MariaDb {
        MariaDb::start_at(
            Some(disk.path().join("data")),
            &["--innodb-flush-method=fsync"],
        )
    }

    /// The server's error log.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("err.log")).unwrap_or_default()
    }
}
