//! Where a restored database may be written: inside the output
//! directory, never through a symbolic link out of it, and never over an
//! existing file unless asked.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

/// Creates the parents of `root/rel`, refusing any symbolic link on the way
/// (or at the output itself) that leads outside `root`; returns the output
/// path.
pub fn prepare_output(root: &Path, rel: &Path) -> Result<PathBuf> {
    litestreampp_core::fsutil::create_dir_all(root)?;
    let canon_root = root
        .canonicalize()
        .with_context(|| format!("resolve output directory {}", root.display()))?;
    let mut cur = root.to_path_buf();
    let n = rel.components().count();
    for (i, c) in rel.components().enumerate() {
        cur.push(c);
        let md = match std::fs::symlink_metadata(&cur) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if i + 1 < n {
                    litestreampp_core::fsutil::create_dir_all(&cur)?;
                }
                continue;
            }
            Err(e) => return Err(anyhow!(e).context(format!("inspect {}", cur.display()))),
        };
        if md.file_type().is_symlink() {
            let target = cur.canonicalize().ok();
            if !target.as_ref().is_some_and(|t| t.starts_with(&canon_root)) {
                bail!(
                    "refusing to restore through {}: a symbolic link that points outside the output directory {}",
                    cur.display(),
                    root.display()
                );
            }
        } else if i + 1 < n && !md.is_dir() {
            bail!("cannot restore under {}: not a directory", cur.display());
        }
    }
    Ok(cur)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_out_of_the_output_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, out.join("evil")).unwrap();
        std::fs::create_dir_all(out.join("real")).unwrap();
        std::os::unix::fs::symlink(out.join("real"), out.join("fine")).unwrap();
        let e = prepare_output(&out, Path::new("evil/x.db")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(prepare_output(&out, Path::new("fine/x.db")).is_ok());
        let p = prepare_output(&out, Path::new("new/dir/x.db")).unwrap();
        assert_eq!(p, out.join("new/dir/x.db"));
        assert!(out.join("new/dir").is_dir());
        std::os::unix::fs::symlink(outside.join("x.db"), out.join("link.db")).unwrap();
        assert!(prepare_output(&out, Path::new("link.db")).is_err());
    }
}
