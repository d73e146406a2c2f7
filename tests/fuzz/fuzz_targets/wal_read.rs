//! The WAL reader on any bytes, as the engine reads a live WAL: header,
//! then committed transactions (whole, and in size-limited pieces), then
//! the pages they name, and a resume at a frame boundary. The first input
//! byte chooses how: bit 0 rewrites the header and frame checksums so that
//! mutations of the other fields get past the checksum chain, bits 1-3 the
//! read limit. Either the input is refused with an error or read; nothing
//! panics.
#![no_main]

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use litestreampp_core::wal::{
    FRAME_HEADER_SIZE, WAL_HEADER_SIZE, WalHeader, WalReader, checksum,
};

/// One scratch file per fuzzing process (on tmpfs when there is one): the
/// reader works on files, as it does on a database's `-wal`.
fn scratch() -> &'static Mutex<File> {
    static F: OnceLock<Mutex<File>> = OnceLock::new();
    F.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let f = tempfile_in(&dir);
        Mutex::new(f)
    })
}

fn tempfile_in(dir: &std::path::Path) -> File {
    let path = dir.join(format!("litestreampp-fuzz-wal-{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("scratch file");
    let _ = std::fs::remove_file(&path); // unlinked: gone when the process ends
    f
}

/// Rewrites the header checksum and every whole frame's checksum so the
/// chain holds (salts are left as they are).
fn fix_checksums(w: &mut [u8]) {
    if w.len() < WAL_HEADER_SIZE as usize {
        return;
    }
    let be = w[3] & 1 == 1;
    let c = checksum(be, (0, 0), &w[0..24]);
    w[24..28].copy_from_slice(&c.0.to_be_bytes());
    w[28..32].copy_from_slice(&c.1.to_be_bytes());
    let ps = u32::from_be_bytes([w[8], w[9], w[10], w[11]]) as usize;
    if !(512..=65536).contains(&ps) || !ps.is_power_of_two() {
        return;
    }
    let fs = FRAME_HEADER_SIZE as usize + ps;
    let mut chk = c;
    let mut off = WAL_HEADER_SIZE as usize;
    while off + fs <= w.len() {
        let c = checksum(be, chk, &w[off..off + 8]);
        let c = checksum(be, c, &w[off + 24..off + fs]);
        w[off + 16..off + 20].copy_from_slice(&c.0.to_be_bytes());
        w[off + 20..off + 24].copy_from_slice(&c.1.to_be_bytes());
        chk = c;
        off += fs;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut wal = rest.to_vec();
    if mode & 1 == 1 {
        fix_checksums(&mut wal);
    }
    let limit = u64::from((mode >> 1) & 7) * 4096;
    let guard = scratch().lock().unwrap_or_else(|e| e.into_inner());
    let f: &File = &guard;
    // At offset 0 every time (a plain write would go on at the cursor).
    f.set_len(0).expect("truncate scratch");
    f.write_all_at(&wal, 0).expect("write scratch");
    let h = match WalHeader::read(f, "fuzz-wal") {
        Ok(Some(h)) => h,
        _ => return,
    };
    let mut page = vec![0u8; h.page_size as usize];
    let mut r = WalReader::new(f, "fuzz-wal", h);
    let mut resume_at = None;
    for _ in 0..64 {
        let Ok(seg) = r.read_transactions(limit) else {
            break;
        };
        for &off in seg.pages.values() {
            let _ = r.read_page(off, &mut page);
        }
        if seg.is_empty() {
            break;
        }
        resume_at.get_or_insert(seg.end);
    }
    if let Some(off) = resume_at
        && let Ok(Some(seed)) = WalReader::seed_at(f, "fuzz-wal", &h, off)
    {
        let _ = WalReader::resume(f, "fuzz-wal", h, off, seed).read_transactions(0);
    }
});
