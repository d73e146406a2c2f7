//! Keeping a long-running fleet small. glibc gives every thread that
//! allocates its own arena (up to 8 per core) and keeps freed memory in
//! it: after a backlog of 100,000 snapshots the process held several times
//! its live heap. The fleet caps the arenas and hands free memory back to
//! the kernel after bursts of work.

/// Caps glibc's malloc arenas at two per process (call before threads
/// start). No-op on other C libraries.
#[allow(unsafe_code)] // two glibc tuning calls; nothing else in the project is unsafe
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called once at
    // startup, before the runtime's threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
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
