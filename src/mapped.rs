//! Bodies held in memory files, so that a plain connection can send them with `sendfile(2)`
//! from the file's pages instead of copying them through user space.
//!
//! [`collect`] copies a body once into an anonymous memory file (`memfd_create`) of its
//! own and maps the file into the process: the mapping is the body's bytes for every reader
//! (TLS, HTTP/2 framing, playlist rewriting), and a writer that finds a slice of one
//! ([`locate`]) sends that slice from the file instead. The file is unmapped and closed
//! when the last reference to the body drops. A file is never written again once its body
//! is handed out, so pages the kernel still holds for a send in flight keep their bytes.
//!
//! Each body costs a file descriptor and a memory mapping, so at most [`limit`] are alive
//! at once (a quarter of the process's file descriptors and of its mappings); past that,
//! and wherever the kernel refuses, a body is kept on the heap as before and written by
//! copying.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
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
    /// The memory file; closed on drop, after the mapping is gone.
    file: OwnedFd,
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `addr..addr + len` is a readable shared mapping that lives as long as
        // `self` (unmapped only in `drop`), and no one writes to it after `collect`
        // filled it (it is made read-only there).
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

/// The body made of `chunks`, in a memory file of its own; `None` when it is empty, when
/// [`limit`] bodies are alive already, or when the kernel refuses a file or a mapping.
pub fn collect(chunks: &[Bytes]) -> Option<Bytes> {
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
    let Some(mapping) = Mapping::new(len) else {
        LIVE.fetch_sub(1, Ordering::Relaxed);
        return None;
    };
    let mut at = 0;
    for chunk in chunks {
        // SAFETY: the chunks add up to `len`, so each copy lands inside the new writable
        // mapping, which nothing else can reach yet.
        unsafe {
            std::ptr::copy_nonoverlapping(
                chunk.as_ptr(),
                (mapping.addr as *mut u8).add(at),
                chunk.len(),
            );
        }
        at += chunk.len();
    }
    // SAFETY: the same mapping, now read-only: the body never changes once handed out.
    if unsafe { libc::mprotect(mapping.addr as *mut libc::c_void, len, libc::PROT_READ) } != 0 {
        return None;
    }
    MAPPINGS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(mapping.addr, (len, mapping.file.as_raw_fd()));
    Some(Bytes::from_owner(mapping))
}

impl Mapping {
    /// A new memory file of `len` bytes, mapped writable; not registered yet.
    fn new(len: usize) -> Option<Self> {
        // SAFETY: a plain system call with a NUL-terminated name; the result is checked.
        let fd = unsafe { libc::memfd_create(c"usher-body".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` was just returned to us and is owned by nothing else.
        let file = unsafe { OwnedFd::from_raw_fd(fd) };
        // Reads need not update the file's access time (0.7 % of the CPU serving 188 KB
        // hits by `sendfile`); the flag is only an optimisation, so a refusal is ignored.
        // SAFETY: plain system calls on our own descriptor.
        unsafe {
            let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags | libc::O_NOATIME);
        }
        let size = libc::off_t::try_from(len).ok()?;
        // SAFETY: a plain system call on our own descriptor; the result is checked.
        if unsafe { libc::ftruncate(file.as_raw_fd(), size) } != 0 {
            return None;
        }
        // SAFETY: a new shared mapping of the whole file, which is `len` bytes long.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
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

/// The memory file and offset that hold all of `slice`, when it lies within a mapped body.
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

    #[test]
    fn a_body_reads_back_whole_and_its_slices_are_found_in_its_file() {
        let chunks = [
            Bytes::from_static(b"first chunk, "),
            Bytes::from(vec![b'x'; 100_000]),
            Bytes::from_static(b", last"),
        ];
        let body = collect(&chunks).expect("memory files work here");
        let whole: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(&body[..], &whole[..]);

        let (fd, offset) = locate(&body[13..1000]).expect("a slice of a mapped body");
        assert_eq!(offset, 13);
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

        let heap = Bytes::from(vec![1u8; 100_000]);
        assert!(locate(&heap).is_none(), "heap bytes are not in any file");
        assert!(collect(&[]).is_none(), "an empty body needs no file");
    }

    /// Whether any open descriptor or mapping of this process is the file with `inode`.
    fn held(inode: u64) -> bool {
        use std::os::unix::fs::MetadataExt;
        let open = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|fd| std::fs::metadata(fd.ok()?.path()).ok())
            .any(|file| file.ino() == inode);
        let mapped = std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .any(|line| {
                line.contains("usher-body")
                    && line.split_whitespace().nth(4) == Some(&inode.to_string())
            });
        open || mapped
    }

    #[test]
    fn the_file_goes_when_the_last_clone_of_its_body_drops() {
        use std::os::unix::fs::MetadataExt;
        let body = collect(&[Bytes::from(vec![7u8; 70_000])]).unwrap();
        let (fd, _) = locate(&body).unwrap();
        let inode = std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .ino();
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
