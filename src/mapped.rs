//! Bodies held in files of their own, so that a plain connection can send them with
//! `sendfile(2)` from the file's pages instead of copying them through user space.
//!
//! [`collect`] writes a body once into a file of its own, where its [`Backing`] says: an
//! unnamed file (`O_TMPFILE`) in a directory, whose filesystem's page cache holds it, or an
//! anonymous memory file (`memfd_create`). It then maps the file into the process: the
//! mapping is the body's bytes for every reader (TLS, HTTP/2 framing, playlist rewriting),
//! and a writer that finds a slice of one ([`locate`]) sends that slice from the file
//! instead. The file is unmapped and closed when the last reference to the body drops, and
//! an unnamed file is gone with it (and with the process, however it ends). A file is never
//! written again once its body is handed out, so pages the kernel still holds for a send in
//! flight keep their bytes.
//!
//! The two backings differ in what `sendfile` costs: a memory file's pages are looked up
//! one 4 KiB page at a time (`shmem`), while a file on a disk filesystem such as ext4 sits in
//! the page cache in large folios that are looked up in batches, as nginx's static files
//! are. Measured in README "Benchmarks".
//!
//! Each body costs a file descriptor and a memory mapping, so at most [`limit`] are alive
//! at once (a quarter of the process's file descriptors and of its mappings); past that,
//! and wherever the kernel refuses, a body is kept on the heap as before and written by
//! copying.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{OnceLock, RwLock};

use bytes::Bytes;

/// Mapped bodies alive now.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Every live mapping by its first address: its length and its file.
static MAPPINGS: RwLock<BTreeMap<usize, (usize, RawFd)>> = RwLock::new(BTreeMap::new());

/// One body's file and its mapping.
struct Mapping {
    /// First address of the mapping.
    addr: usize,
    /// Length in bytes (the body's).
    len: usize,
    /// The body's file; closed on drop, after the mapping is gone.
    file: File,
}

/// Where [`collect`] makes bodies' files.
#[derive(Debug)]
pub enum Backing {
    /// Anonymous memory files (`memfd_create`).
    Memory,
    /// Unnamed files (`O_TMPFILE`) in a directory.
    Directory {
        /// The directory, open.
        dir: OwnedFd,
        /// Its path, for the log.
        path: PathBuf,
    },
}

impl Backing {
    /// Unnamed files in `path`, made first if missing; checked by making one.
    ///
    /// # Errors
    /// When the directory cannot be made or opened, or its filesystem cannot hold unnamed
    /// files (`O_TMPFILE` needs ext4, XFS, btrfs, tmpfs or another that supports it).
    pub fn directory(path: &Path) -> std::io::Result<Self> {
        crate::data_dir::create(path)?;
        let dir = OwnedFd::from(File::open(path)?);
        let backing = Self::Directory {
            dir,
            path: path.to_owned(),
        };
        backing.file()?;
        Ok(backing)
    }

    /// Where the files go, for the log: `memory` or the directory.
    pub fn describe(&self) -> String {
        match self {
            Self::Memory => "memory".to_owned(),
            Self::Directory { path, .. } => path.display().to_string(),
        }
    }

    /// A new empty file of this backing, readable and writable.
    fn file(&self) -> std::io::Result<File> {
        // SAFETY: plain system calls with a NUL-terminated name or path and our own open
        // directory; the result is checked.
        let fd = unsafe {
            match self {
                Self::Memory => libc::memfd_create(c"usher-body".as_ptr(), libc::MFD_CLOEXEC),
                Self::Directory { dir, .. } => libc::openat(
                    dir.as_raw_fd(),
                    c".".as_ptr(),
                    libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
                    0o600 as libc::c_uint,
                ),
            }
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned to us and is owned by nothing else.
        Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `addr..addr + len` is a readable shared mapping that lives as long as
        // `self` (unmapped only in `drop`), of a file no one writes to after
        // `Mapping::new` filled it.
        unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        MAPPINGS
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.addr);
        // SAFETY: the mapping was made by `collect` with this address and length, and no
        // slice of it outlives `self` (the only way to it is through `Bytes` owning `self`).
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How many mapped bodies may be alive at once: a quarter of the soft limit on open files
/// and a quarter of the kernel's limit on mappings per process, whichever is lower.
pub fn limit() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let files = crate::open_files::limits()
            .and_then(|(soft, _)| usize::try_from(soft).ok())
            .unwrap_or(1024);
        let maps = std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|text| text.trim().parse::<usize>().ok())
            .unwrap_or(65_530);
        (files / 4).min(maps / 4)
    })
}

/// Mapped bodies alive now.
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// The body made of `chunks`, in a file of its own made by `backing`; `None` when it is
/// empty, when [`limit`] bodies are alive already, or when the kernel refuses a file, its
/// bytes (a full disk) or a mapping.
pub fn collect(chunks: &[Bytes], backing: &Backing) -> Option<Bytes> {
    let len: usize = chunks.iter().map(Bytes::len).sum();
    if len == 0 {
        return None;
    }
    let limit = limit();
    LIVE.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |live| {
        (live < limit).then_some(live + 1)
    })
    .ok()?;
    // From here the count is the mapping's to give back when it drops.
    let Some(mapping) = Mapping::new(chunks, len, backing) else {
        LIVE.fetch_sub(1, Ordering::Relaxed);
        return None;
    };
    MAPPINGS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(mapping.addr, (len, mapping.file.as_raw_fd()));
    Some(Bytes::from_owner(mapping))
}

impl Mapping {
    /// A new file of `backing` holding `chunks` (`len` bytes together), mapped read-only;
    /// not registered yet.
    ///
    /// The bytes go in by `pwrite`, not through the mapping: the filesystem then places
    /// them in large folios where it can (ext4 does), which `sendfile` reads in batches.
    fn new(chunks: &[Bytes], len: usize, backing: &Backing) -> Option<Self> {
        let file = backing.file().ok()?;
        // Reads need not update the file's access time (0.7 % of the CPU serving 188 KB
        // hits by `sendfile`); the flag is only an optimisation, so a refusal is ignored.
        // SAFETY: plain system calls on our own descriptor.
        unsafe {
            let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags | libc::O_NOATIME);
        }
        let mut at = 0;
        for chunk in chunks {
            file.write_all_at(chunk, at).ok()?;
            at += chunk.len() as u64;
        }
        // SAFETY: a new shared read-only mapping of the whole file, which is `len` bytes
        // long; nothing writes to the file again.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return None;
        }
        Some(Self {
            addr: addr as usize,
            len,
            file,
        })
    }
}

/// The file and offset that hold all of `slice`, when it lies within a mapped body.
///
/// The descriptor stays open for as long as the caller holds the body `slice` comes from.
pub fn locate(slice: &[u8]) -> Option<(RawFd, u64)> {
    if LIVE.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let start = slice.as_ptr() as usize;
    let mappings = MAPPINGS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (&addr, &(len, fd)) = mappings.range(..=start).next_back()?;
    (start + slice.len() <= addr + len).then(|| (fd, (start - addr) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both backings: memory files, and unnamed files in a fresh directory (kept alive by
    /// the returned guard).
    fn backings() -> (tempfile::TempDir, [Backing; 2]) {
        let dir = tempfile::tempdir().unwrap();
        let files = Backing::directory(&dir.path().join("bodies")).expect("O_TMPFILE works here");
        (dir, [Backing::Memory, files])
    }

    /// Where the descriptor `fd` of this process points.
    fn target(fd: RawFd) -> String {
        std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .display()
            .to_string()
    }

    #[test]
    fn a_body_reads_back_whole_and_its_slices_are_found_in_its_file() {
        let chunks = [
            Bytes::from_static(b"first chunk, "),
            Bytes::from(vec![b'x'; 100_000]),
            Bytes::from_static(b", last"),
        ];
        let whole: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let (dir, backings) = backings();
        for (backing, place) in backings.iter().zip([
            "/memfd:usher-body".to_owned(),
            format!("{}/bodies/", dir.path().display()),
        ]) {
            let body = collect(&chunks, backing).expect("files work here");
            assert_eq!(&body[..], &whole[..]);

            let (fd, offset) = locate(&body[13..1000]).expect("a slice of a mapped body");
            assert_eq!(offset, 13);
            let file = target(fd);
            assert!(
                file.starts_with(&place) && file.ends_with("(deleted)"),
                "an unnamed file in {place}: {file}"
            );
            let mut read = vec![0u8; 987];
            // SAFETY: reads into our own buffer of that length from the body's open file.
            let n = unsafe {
                libc::pread(
                    fd,
                    read.as_mut_ptr().cast(),
                    read.len(),
                    offset as libc::off_t,
                )
            };
            assert_eq!(n, 987);
            assert_eq!(read, &body[13..1000], "the file holds the body's bytes");
            assert!(
                collect(&[], backing).is_none(),
                "an empty body needs no file"
            );
        }
        assert_eq!(
            std::fs::read_dir(dir.path().join("bodies"))
                .unwrap()
                .count(),
            0,
            "unnamed files leave no name behind"
        );
        let heap = Bytes::from(vec![1u8; 100_000]);
        assert!(locate(&heap).is_none(), "heap bytes are not in any file");
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("a-file");
        std::fs::write(&blocker, b"not a directory").unwrap();
        assert!(Backing::directory(&blocker.join("bodies")).is_err());
        assert!(Backing::directory(&blocker).is_err());
        let made = Backing::directory(&dir.path().join("new/bodies")).unwrap();
        assert_eq!(
            made.describe(),
            dir.path().join("new/bodies").display().to_string()
        );
        assert_eq!(Backing::Memory.describe(), "memory");
    }

    /// Whether any open descriptor or mapping of this process is the file `(device, inode)`
    /// (both: a freed inode number is soon given to another test's file).
    fn held((device, inode): (u64, u64)) -> bool {
        use std::os::unix::fs::MetadataExt;
        let open = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|fd| std::fs::metadata(fd.ok()?.path()).ok())
            .any(|file| (file.dev(), file.ino()) == (device, inode));
        let mapped = std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let dev = fields
                    .get(3)
                    .and_then(|d| d.split_once(':'))
                    .map(|(ma, mi)| {
                        let number = |hex| u32::from_str_radix(hex, 16).unwrap();
                        libc::makedev(number(ma), number(mi))
                    });
                dev == Some(device) && fields.get(4) == Some(&inode.to_string().as_str())
            });
        open || mapped
    }

    #[test]
    fn the_file_goes_when_the_last_clone_of_its_body_drops() {
        use std::os::unix::fs::MetadataExt;
        let (_dir, backings) = backings();
        for backing in &backings {
            let body = collect(&[Bytes::from(vec![7u8; 70_000])], backing).unwrap();
            let (fd, _) = locate(&body).unwrap();
            let file = std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap();
            let inode = (file.dev(), file.ino());
            assert!(held(inode));
            let clone = body.slice(10..20);
            drop(body);
            assert_eq!(locate(&clone), Some((fd, 10)), "a slice keeps the file");
            assert_eq!(&clone[..], &[7u8; 10]);
            assert!(held(inode));
            drop(clone);
            assert!(!held(inode), "closed and unmapped with the last clone");
        }
    }
}
