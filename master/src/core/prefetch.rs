//! Fetching memory into the cache ahead of use, for loops that know which scattered
//! records they touch next when the hardware cannot guess it.
//!
//! An allocation round visits agents in a shuffled order, and each offer touches several
//! separate allocations of its agent (the record, its free pools, its filter slots, the
//! id and the description the offer shares). Waited for one after the other, those
//! cache misses, not the instructions, are most of a round's time.

/// Asks the CPU to bring the cache line holding `addr` into the cache, without waiting
/// for it. A hint only: it never faults, whatever the address, and changes nothing the
/// program can observe; elsewhere than on x86-64 it does nothing.
#[inline(always)]
#[allow(unsafe_code, reason = "prefetching has no safe wrapper in std; the instruction never faults")]
pub(crate) fn prefetch<T: ?Sized>(addr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` is a hint; it dereferences nothing in the program's sense and
    // does not fault on any address, valid or not (SSE is part of the x86-64 baseline).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// Prefetches the cache lines of the first `bytes` bytes of the value at `value` (a
/// record's hot part, laid out first); at most the whole value. Only the address is used:
/// the value need not be in the cache, nor valid.
#[inline(always)]
pub(crate) fn prefetch_prefix<T>(value: *const T, bytes: usize) {
    let start = value.cast::<u8>();
    for offset in (0..bytes.min(std::mem::size_of::<T>())).step_by(64) {
        prefetch(start.wrapping_add(offset));
    }
}
