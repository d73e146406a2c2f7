//! Reader for the legacy page encoding (ltx 0.5.0/0.5.1, Litestream
//! 0.5.0–0.5.15): one standalone LZ4 *frame* per page, no length prefix, so
//! the frame must be parsed to find where it ends (spec §1.2).

use std::io::Read;

use xxhash_rust::xxh32::xxh32;

const FRAME_MAGIC: u32 = 0x184D_2204;

/// Reads one LZ4 frame from `r` and decompresses it into `out`, which must
/// be filled exactly. Errors are descriptions for a `Corrupt` error.
pub(crate) fn read_frame<R: Read>(r: &mut R, out: &mut [u8]) -> Result<(), String> {
    let mut b4 = [0u8; 4];
    read_exact(r, &mut b4, "frame magic")?;
    if u32::from_le_bytes(b4) != FRAME_MAGIC {
        return Err("bad LZ4 frame magic".into());
    }
    let mut desc = [0u8; 2];
    read_exact(r, &mut desc, "frame descriptor")?;
    let (flg, bd) = (desc[0], desc[1]);
    if flg >> 6 != 0b01 {
        return Err(format!("unsupported LZ4 frame version in FLG 0x{flg:02x}"));
    }
    if flg & 0x02 != 0 || bd & 0x8F != 0 {
        return Err("reserved bits set in LZ4 frame descriptor".into());
    }
    let independent = flg & 0x20 != 0;
    let block_checksum = flg & 0x10 != 0;
    let has_content_size = flg & 0x08 != 0;
    let content_checksum = flg & 0x04 != 0;
    let has_dict_id = flg & 0x01 != 0;
    let block_max = match (bd >> 4) & 0x7 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        v => return Err(format!("invalid LZ4 block max size code {v}")),
    };
    let mut descriptor = vec![flg, bd];
    if has_content_size {
        let mut b8 = [0u8; 8];
        read_exact(r, &mut b8, "frame content size")?;
        descriptor.extend_from_slice(&b8);
        if u64::from_le_bytes(b8) != out.len() as u64 {
            return Err("LZ4 frame content size is not one page".into());
        }
    }
    if has_dict_id {
        return Err("LZ4 frame with a dictionary ID is not supported".into());
    }
    let mut hc = [0u8; 1];
    read_exact(r, &mut hc, "frame header checksum")?;
    if hc[0] != ((xxh32(&descriptor, 0) >> 8) & 0xFF) as u8 {
        return Err("LZ4 frame header checksum mismatch".into());
    }

    let mut filled = 0usize;
    let mut block = Vec::new();
    loop {
        read_exact(r, &mut b4, "block size")?;
        let raw = u32::from_le_bytes(b4);
        if raw == 0 {
            break; // EndMark
        }
        let uncompressed = raw & 0x8000_0000 != 0;
        let size = (raw & 0x7FFF_FFFF) as usize;
        if size > block_max {
            return Err(format!(
                "LZ4 block of {size} bytes exceeds the frame's maximum {block_max}"
            ));
        }
        block.resize(size, 0);
        read_exact(r, &mut block, "block data")?;
        if block_checksum {
            read_exact(r, &mut b4, "block checksum")?;
            if u32::from_le_bytes(b4) != xxh32(&block, 0) {
                return Err("LZ4 block checksum mismatch".into());
            }
        }
        let rest = out.len() - filled;
        if uncompressed {
            if size > rest {
                return Err("LZ4 frame decompresses to more than one page".into());
            }
            out[filled..filled + size].copy_from_slice(&block);
            filled += size;
        } else {
            let n = if independent || filled == 0 {
                lz4_flex::block::decompress_into(&block, &mut out[filled..])
            } else {
                let (dict, tail) = out.split_at_mut(filled);
                lz4_flex::block::decompress_into_with_dict(&block, tail, dict)
            }
            .map_err(|e| format!("LZ4 block: {e}"))?;
            filled += n;
        }
    }
    if filled != out.len() {
        return Err(format!(
            "LZ4 frame decompressed to {filled} bytes, expected a {}-byte page",
            out.len()
        ));
    }
    if content_checksum {
        read_exact(r, &mut b4, "content checksum")?;
        if u32::from_le_bytes(b4) != xxh32(out, 0) {
            return Err("LZ4 frame content checksum mismatch".into());
        }
    }
    Ok(())
}

fn read_exact<R: Read>(r: &mut R, buf: &mut [u8], what: &str) -> Result<(), String> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            format!("truncated in LZ4 {what}")
        } else {
            format!("read LZ4 {what}: {e}")
        }
    })
}
