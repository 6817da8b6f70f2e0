//! The data directory's lock file: every `usher serve` on the embedded database holds it
//! shared for as long as it runs, and `usher store import` takes it alone, so an import
//! never writes under a running server (which would not see what it wrote until a restart)
//! and no server starts during an import. The kernel lets go of a lock when its process
//! ends, however it ends: nothing is left to clean up after a crash.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// The lock file's name in the data directory.
pub const FILE: &str = "usher.lock";

/// A lock held on a data directory, let go when the file is closed (dropped).
#[derive(Debug)]
pub struct Held {
    _file: File,
}

/// Who takes the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// A server: any number at once.
    Server,
    /// An import: alone.
    Import,
}

/// Takes the lock of `dir` (made if missing) for `holder` without waiting; `None` when
/// someone else holds it in a way that excludes `holder`.
///
/// # Errors
/// When the lock file cannot be made or locked.
pub fn take(dir: &Path, holder: Holder) -> std::io::Result<Option<Held>> {
    super::create(dir)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(FILE))?;
    let mode = match holder {
        Holder::Server => libc::LOCK_SH,
        Holder::Import => libc::LOCK_EX,
    };
    // SAFETY: flock on a descriptor this function owns; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), mode | libc::LOCK_NB) } == 0 {
        return Ok(Some(Held { _file: file }));
    }
    let error = std::io::Error::last_os_error();
    if error.kind() == std::io::ErrorKind::WouldBlock {
        Ok(None)
    } else {
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_share_and_an_import_is_alone() {
        let dir = tempfile::tempdir().unwrap();
        let first = take(dir.path(), Holder::Server).unwrap();
        let second = take(dir.path(), Holder::Server).unwrap();
        assert!(first.is_some() && second.is_some(), "servers share it");
        assert!(take(dir.path(), Holder::Import).unwrap().is_none());
        drop((first, second));
        let import = take(dir.path(), Holder::Import).unwrap();
        assert!(import.is_some(), "free once the servers let go");
        assert!(take(dir.path(), Holder::Server).unwrap().is_none());
    }
}
