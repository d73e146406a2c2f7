//! Keeping a long-running fleet small. glibc gives every thread that
//! allocates its own arena (up to 8 per core) and keeps freed memory in
//! it, so a burst of work leaves the process at several times its live
//! heap (figures in `docs/benchmarks.md`). The fleet caps the arenas,
//! keeps large blocks out of the heap and hands free memory back to the
//! kernel after bursts of work.

/// Allocations at least this large get their own mapping, returned to the
/// kernel when freed.
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Tunes glibc's malloc for a long-running fleet (call before threads
/// start): at most two arenas, and a fixed mmap threshold. glibc raises
/// the threshold each time a large block is freed (up to 32 MB), after
/// which sync buffers and the registry's hash tables are carved from the
/// heap and leave it fragmented; fixed at 128 KiB they are mapped and
/// unmapped on their own. No-op on other C libraries.
#[allow(unsafe_code)] // glibc tuning calls; nothing else in the project is unsafe
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called once at
    // startup, before the runtime's threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Returns free heap memory to the kernel (glibc's `malloc_trim`). Takes
/// milliseconds; called after the backlog drains and after demotions.
#[allow(unsafe_code)]
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}
