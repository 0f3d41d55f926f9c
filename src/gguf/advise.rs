//! Paging hints on ranges of a mapped GGUF file: what the kernel should read ahead, drop or keep.
//! The model uses them to page experts in and out of memory (see `model::pager`); they never change
//! the bytes a slice reads, only when they are fetched from disk.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::{mpsc, Arc};

use memmap2::Mmap;

use super::GgufFile;

/// What to tell the kernel about a range of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageHint {
    /// Random access: no read-ahead around faults (experts are read in slices, not in file order).
    Random,
    /// Start reading it now, asynchronously (MADV_WILLNEED).
    WillNeed,
    /// Not needed soon: drop our mapping of it and the clean page-cache pages behind it
    /// (MADV_DONTNEED + POSIX_FADV_DONTNEED). A later read faults the same bytes back in from disk.
    Release,
    /// Keep it in memory (mlock); fails quietly past RLIMIT_MEMLOCK.
    Lock,
}

impl GgufFile {
    /// Applies `hint` to the pages holding `bytes`, which must be a slice of this file's map
    /// (a foreign slice is ignored). Returns whether the kernel accepted it.
    pub fn advise(&self, bytes: &[u8], hint: PageHint) -> bool {
        match pages(&self.map, bytes, hint) {
            Some((a, len)) => apply(&self.map, self.file.as_raw_fd(), a, len, hint),
            None => false,
        }
    }

    /// A thread that applies hints on this file in the background, in the order they are given,
    /// so that the caller does not wait for the kernel's work (dropping an expert's pages or
    /// starting its reads took 30% of decode time under a tight memory limit). It holds its own
    /// reference to the map, so the map outlives it.
    pub fn background_adviser(&self) -> std::io::Result<Adviser> {
        let (map, file) = (Arc::clone(&self.map), self.file.try_clone()?);
        let (tx, rx) = mpsc::channel::<(usize, usize, PageHint)>();
        let handle = std::thread::Builder::new()
            .name("smoe-pager".into())
            .spawn(move || {
                for (a, len, hint) in rx {
                    apply(&map, file.as_raw_fd(), a, len, hint);
                }
            })?;
        Ok(Adviser {
            base: self.map.as_ptr() as usize,
            map_len: self.map.len(),
            tx: Some(tx),
            handle: Some(handle),
        })
    }
}

/// Hints applied by a background thread (see [`GgufFile::background_adviser`]). Dropping it
/// waits for the hints already given.
#[derive(Debug)]
pub struct Adviser {
    base: usize,
    map_len: usize,
    tx: Option<mpsc::Sender<(usize, usize, PageHint)>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Adviser {
    /// Queues `hint` for the pages holding `bytes` (a slice of the file's map; a foreign one is
    /// ignored). Returns whether it was queued.
    pub fn advise(&self, bytes: &[u8], hint: PageHint) -> bool {
        let Some((a, len)) = pages_at(self.base, self.map_len, bytes, hint) else {
            return false;
        };
        self.tx
            .as_ref()
            .is_some_and(|tx| tx.send((a, len, hint)).is_ok())
    }
}

impl Drop for Adviser {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The page-aligned range `(offset, len)` of `map` that `hint` should cover for `bytes`, or
/// `None` when `bytes` is not inside the map or covers no page.
fn pages(map: &Mmap, bytes: &[u8], hint: PageHint) -> Option<(usize, usize)> {
    pages_at(map.as_ptr() as usize, map.len(), bytes, hint)
}

fn pages_at(base: usize, map_len: usize, bytes: &[u8], hint: PageHint) -> Option<(usize, usize)> {
    let off = (bytes.as_ptr() as usize).checked_sub(base)?;
    if bytes.is_empty() || off + bytes.len() > map_len {
        return None;
    }
    let page = page_size();
    // Whole pages only for Release (a shared edge page may belong to a neighbour still in use);
    // the covering pages for the others.
    let (a, b) = match hint {
        PageHint::Release => (off.div_ceil(page) * page, (off + bytes.len()) / page * page),
        _ => (off / page * page, (off + bytes.len()).div_ceil(page) * page),
    };
    let b = b.min(map_len);
    (b > a).then_some((a, b - a))
}

/// Applies `hint` to `map[a..a + len]` (page-aligned, inside the map); `fd` is the mapped file.
fn apply(map: &Mmap, fd: RawFd, a: usize, len: usize, hint: PageHint) -> bool {
    match hint {
        PageHint::Random => map.advise_range(memmap2::Advice::Random, a, len).is_ok(),
        PageHint::WillNeed => map.advise_range(memmap2::Advice::WillNeed, a, len).is_ok(),
        PageHint::Release => {
            // SAFETY: DONTNEED on a read-only, file-backed private mapping only drops this
            // process's page-table entries; any later read faults the unchanged file bytes back
            // in, so no slice borrowed from the map observes different data.
            let unmapped =
                unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, a, len) }
                    .is_ok();
            // SAFETY: posix_fadvise only reads its integer arguments; the fd is open for as long
            // as the map it backs, and the offsets are within the file (the map covers it).
            let dropped = unsafe {
                libc::posix_fadvise(
                    fd,
                    a as libc::off_t,
                    len as libc::off_t,
                    libc::POSIX_FADV_DONTNEED,
                )
            } == 0;
            unmapped && dropped
        }
        PageHint::Lock => {
            // SAFETY: mlock takes an address range inside the live mapping (checked by the
            // caller); it only pins pages and does not read or write through the pointer.
            unsafe { libc::mlock(map.as_ptr().add(a).cast(), len) == 0 }
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).unwrap_or(4096).max(4096)
}
