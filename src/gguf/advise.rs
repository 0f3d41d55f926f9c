//! Paging hints on ranges of a mapped GGUF file: what the kernel should read ahead, drop or keep.
//! The model uses them to page experts in and out of memory (see `model::pager`); they never change
//! the bytes a slice reads, only when they are fetched from disk.

use std::os::fd::AsRawFd;

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
        let base = self.map.as_ptr() as usize;
        let start = bytes.as_ptr() as usize;
        let Some(off) = start.checked_sub(base) else {
            return false;
        };
        if bytes.is_empty() || off + bytes.len() > self.map.len() {
            return false;
        }
        let page = page_size();
        // Whole pages only for Release (a shared edge page may belong to a neighbour still in
        // use); the covering pages for the others.
        let (a, b) = match hint {
            PageHint::Release => (off.div_ceil(page) * page, (off + bytes.len()) / page * page),
            _ => (off / page * page, (off + bytes.len()).div_ceil(page) * page),
        };
        let b = b.min(self.map.len());
        if b <= a {
            return false;
        }
        let len = b - a;
        match hint {
            PageHint::Random => self
                .map
                .advise_range(memmap2::Advice::Random, a, len)
                .is_ok(),
            PageHint::WillNeed => self
                .map
                .advise_range(memmap2::Advice::WillNeed, a, len)
                .is_ok(),
            PageHint::Release => {
                // SAFETY: DONTNEED on a read-only, file-backed private mapping only drops this
                // process's page-table entries; any later read faults the unchanged file bytes back
                // in, so no slice borrowed from the map observes different data.
                let unmapped = unsafe {
                    self.map
                        .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, a, len)
                }
                .is_ok();
                // SAFETY: posix_fadvise only reads its integer arguments; the fd is open for the
                // lifetime of `self`, and the offsets are within the file (the map covers it).
                let dropped = unsafe {
                    libc::posix_fadvise(
                        self.file.as_raw_fd(),
                        a as libc::off_t,
                        len as libc::off_t,
                        libc::POSIX_FADV_DONTNEED,
                    )
                } == 0;
                unmapped && dropped
            }
            PageHint::Lock => {
                // SAFETY: mlock takes an address range inside our live mapping (checked above); it
                // only pins pages and does not read or write through the pointer.
                unsafe { libc::mlock(self.map.as_ptr().add(a).cast(), len) == 0 }
            }
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).unwrap_or(4096).max(4096)
}
