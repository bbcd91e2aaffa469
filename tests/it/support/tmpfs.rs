//! A real full disk for tests: a small tmpfs mounted on a directory
//! (shared by tests/it/durability.rs and `runner::durable`'s unit test, which
//! includes this file with `#[path]`).

use std::io::Write;
use std::path::{Path, PathBuf};

/// A tmpfs mounted on a directory for the test, unmounted on drop. Needs
/// root (CI runs as root): without it the test fails, it does not skip.
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("create the mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs on {} (this test needs root, as CI runs it): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir: dir.to_path_buf() }
    }

    /// Writes a file until the filesystem is full.
    pub fn fill(&self) {
        let mut f = std::fs::File::create(self.dir.join("filler")).expect("create the filler");
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..16 * 1024 {
            if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_all()) {
                assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected: {e}");
                return;
            }
        }
        panic!("{} did not fill up", self.dir.display());
    }

    pub fn free(&self) {
        std::fs::remove_file(self.dir.join("filler")).expect("remove the filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
