//! The LTX decoder on any bytes, both ways the engine reads a file: the
//! streaming decoder (restore, verification) and the page index read from
//! the tail (compaction, random page reads). Either refuses the input with
//! an error or decodes it; nothing panics or allocates without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use litestreampp_core::ltx::{Decoder, Header, PageIndex, decode_frame};

fuzz_target!(|data: &[u8]| {
    if let Ok(mut d) = Decoder::new(data, "fuzz.ltx") {
        let mut page = vec![0u8; d.header().page_size as usize];
        while let Ok(Some(_)) = d.next_page(&mut page) {}
        let _ = d.finish();
    }
    let Ok(header) = Header::decode(data, "fuzz.ltx") else {
        return;
    };
    let size = data.len() as u64;
    let last = &data[data.len().saturating_sub(24)..];
    let Ok(tail) = PageIndex::tail_len(last, size, "fuzz.ltx") else {
        return;
    };
    let Some(start) = data.len().checked_sub(tail as usize) else {
        return;
    };
    let Ok(index) = PageIndex::parse(header, &data[start..], size, "fuzz.ltx") else {
        return;
    };
    let mut page = vec![0u8; header.page_size as usize];
    for e in &index.entries {
        let (Ok(off), Ok(len)) = (usize::try_from(e.offset), usize::try_from(e.size)) else {
            continue;
        };
        if let Some(frame) = off.checked_add(len).and_then(|end| data.get(off..end)) {
            let _ = decode_frame(frame, &mut page, "fuzz.ltx");
        }
    }
});
