//! `litestreampp reset [-dry-run] DB`: Litestream's reset. Removes a
//! database's local replication state (the LTX files in its meta
//! directory) so the next sync starts from a fresh snapshot; the database
//! and the replica are not touched. Output lines are Litestream's.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use litestreampp_core::meta_dir::MetaDir;

use crate::flags::ResetArgs;
use crate::settings::{expand_path, read_config};

pub fn run(args: ResetArgs) -> Result<ExitCode> {
    let db_path = expand_path(&args.db_path)?;
    // As Litestream: the config is read only when given, for where the
    // database's meta directory is.
    let meta_path = match &args.config.config {
        Some(c) => {
            let cfg = read_config(c, !args.config.no_expand_env)?;
            // A tenant of a directory entry too (Litestream looks at path
            // entries only, and would miss a `meta-dir`).
            cfg.db(&db_path)
                .and_then(|d| d.tuning.meta_path.clone())
                .or_else(|| {
                    cfg.dir_db(&db_path)
                        .map(|(d, rel)| d.meta_dir(&db_path, &rel).path().to_path_buf())
                })
        }
        None => None,
    };
    match std::fs::metadata(&db_path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("database does not exist: {}", db_path.display())
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot access database {}", db_path.display()));
        }
    }
    let meta = meta_path.map_or_else(|| MetaDir::for_db(&db_path), MetaDir::new);
    if !meta.path().exists() {
        println!("No local state to reset for {}", db_path.display());
        println!("Meta directory does not exist: {}", meta.path().display());
        return Ok(ExitCode::SUCCESS);
    }
    let ltx = meta.ltx_dir();
    if args.dry_run {
        let files = files_under(&ltx)?;
        println!(
            "Dry run: local Litestream state would be reset for: {}",
            db_path.display()
        );
        println!("Would remove: {}", ltx.display());
        if files.is_empty() {
            println!("No local LTX files would be removed.");
            return Ok(ExitCode::SUCCESS);
        }
        println!("Files that would be removed:");
        for f in files {
            println!("  {}", f.display());
        }
        println!("No files were removed.");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Resetting local Litestream state for: {}",
        db_path.display()
    );
    println!("Removing: {}", ltx.display());
    meta.reset()
        .with_context(|| format!("reset failed for {}", db_path.display()))?;
    println!("Reset complete. Next replication sync will create a fresh snapshot.");
    Ok(ExitCode::SUCCESS)
}

/// Every file under `root`, depth first in name order as Go's `WalkDir`
/// (none when it does not exist).
fn files_under(root: &std::path::Path) -> Result<Vec<PathBuf>> {
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("list {}", dir.display())),
        };
        let mut entries = rd
            .collect::<std::io::Result<Vec<_>>>()
            .with_context(|| format!("list {}", dir.display()))?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            let path = e.path();
            let kind = e
                .file_type()
                .with_context(|| format!("stat {}", path.display()))?;
            if kind.is_dir() {
                walk(&path, out)?;
            } else {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, &mut out)?;
    Ok(out)
}
