//! `lsbench restore-pattern`: a fleet restored from moto by
//! `litestreampp restore-pattern`, against a loop of Go Litestream's
//! `restore` (one process per database, what an operator scripts today)
//! on the same replicas; then a mix with a few large databases.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rusqlite::Connection;

use super::{BUCKET, Bench, fresh_dir, generate_db, measure, median, reset_moto, start_moto};

/// What one `lsbench restore-pattern` run does.
#[derive(clap::Args)]
pub struct RestorePatternArgs {
    /// Small databases in the fleet.
    #[arg(long, default_value_t = 10_000)]
    pub count: usize,
    #[arg(long, default_value_t = 10)]
    pub workers: usize,
    /// Go `litestream restore` runs (one database each, one after the
    /// other) on this many of the fleet's databases.
    #[arg(long, default_value_t = 200)]
    pub go_count: usize,
    /// The mix: this many large databases of --large-mb MiB ...
    #[arg(long, default_value_t = 3)]
    pub large: usize,
    #[arg(long, default_value_t = 64)]
    pub large_mb: u64,
    /// ... next to this many small ones.
    #[arg(long, default_value_t = 500)]
    pub mix_small: usize,
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    #[arg(long, default_value = "target/release/lsdemo")]
    pub lsdemo: PathBuf,
}

/// `s3://bench/<prefix>...` on the moto at `port`.
fn url(port: u16, path: &str) -> String {
    format!(
        "s3://{BUCKET}/{path}?endpoint=http://127.0.0.1:{port}&region=us-east-1&forcePathStyle=true"
    )
}

/// The `.db` files under `dir`, relative to it, sorted.
pub(crate) fn databases(dir: &Path) -> Result<Vec<PathBuf>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            let t = e.file_type()?;
            if t.is_dir() {
                walk(root, &e.path(), out)?;
            } else if name.ends_with(".db") {
                out.push(e.path().strip_prefix(root)?.to_path_buf());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// Every database of `data` restored under `out`, and a sample passing
/// `quick_check`.
pub(crate) fn check_restored(data: &Path, out: &Path) -> Result<()> {
    let want = databases(data)?;
    let got = databases(out)?;
    if want != got {
        bail!(
            "restored {} of {} databases under {}",
            got.len(),
            want.len(),
            out.display()
        );
    }
    let step = (want.len() / 20).max(1);
    for rel in want.iter().step_by(step) {
        let c = Connection::open(out.join(rel))?;
        let r: String = c.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if r != "ok" {
            bail!("{}: quick_check: {r}", rel.display());
        }
    }
    Ok(())
}

impl Bench {
    /// `count` small tenant databases under `dir`, by `lsdemo fleet-build`.
    pub(crate) fn lsdemo_build(&self, lsdemo: &Path, dir: &Path, count: usize) -> Result<()> {
        let _ = std::fs::remove_dir_all(dir);
        let out = Command::new(lsdemo)
            .args([
                "fleet-build",
                "--count",
                &count.to_string(),
                "--shards",
                "100",
                "--dir",
            ])
            .arg(dir)
            .output()
            .context("run lsdemo fleet-build (cargo build --release first)")?;
        if !out.status.success() {
            bail!("fleet-build: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Backs up every database under `data` to `prefix` (`run --once`).
    fn back_up(&self, data: &Path, port: u16, prefix: &str) -> Result<f64> {
        let mut c = self.ours();
        c.args(["run", "--once", "--workers", "16", "--pattern"])
            .arg(format!("{}/**/*.db", data.display()))
            .args(["--replica", &url(port, &format!("{prefix}/{{path}}"))]);
        Ok(measure(c)?.wall)
    }

    /// Median seconds of `runs` restores of `prefix` with restore-pattern.
    fn ours_restore(
        &self,
        a: &RestorePatternArgs,
        data: &Path,
        port: u16,
        prefix: &str,
    ) -> Result<f64> {
        self.ours_restore_url(a, data, &url(port, &format!("{prefix}/**/*.db")))
    }

    /// Median seconds of `runs` restores of the replicas under `pattern`.
    fn ours_restore_url(&self, a: &RestorePatternArgs, data: &Path, pattern: &str) -> Result<f64> {
        let mut walls = Vec::new();
        for _ in 0..a.runs {
            let out = self.work.join("rp/out-ours");
            fresh_dir(&out)?;
            let mut c = self.ours();
            c.args([
                "restore-pattern",
                "--workers",
                &a.workers.to_string(),
                "--output-dir",
            ])
            .arg(&out)
            .arg(pattern);
            walls.push(measure(c)?.wall);
            check_restored(data, &out)?;
        }
        Ok(median(walls))
    }

    /// Seconds for Go to restore `dbs` one `litestream restore` at a time.
    fn go_restore_loop(&self, dbs: &[PathBuf], port: u16, prefix: &str) -> Result<f64> {
        let out = self.work.join("rp/out-go");
        fresh_dir(&out)?;
        self.time_go_restores(dbs, &out, |rel, o| {
            let mut c = self.go();
            c.args(["restore", "-o"])
                .arg(o)
                .arg(url(port, &format!("{prefix}/{}", rel.display())));
            c
        })
    }

    /// Seconds for the Go restores `restore(rel, output)` gives, of each of
    /// `dbs` into `out`/`rel`, one after another.
    pub(crate) fn time_go_restores(
        &self,
        dbs: &[PathBuf],
        out: &Path,
        restore: impl Fn(&Path, &Path) -> Command,
    ) -> Result<f64> {
        nix::unistd::sync();
        let t0 = Instant::now();
        for rel in dbs {
            let o = out.join(rel);
            if let Some(p) = o.parent() {
                std::fs::create_dir_all(p)?;
            }
            let r = restore(rel, &o).output().context("run go restore")?;
            if !r.status.success() {
                bail!(
                    "go restore {}: {}",
                    rel.display(),
                    String::from_utf8_lossy(&r.stderr)
                );
            }
        }
        Ok(t0.elapsed().as_secs_f64())
    }

    /// The whole benchmark; prints Markdown.
    pub fn restore_pattern(&self, a: &RestorePatternArgs) -> Result<()> {
        let root = self.work.join("rp");
        fresh_dir(&root)?;
        let (mut moto, port) = start_moto()?;
        let r = self.restore_pattern_on(a, &root, port);
        let _ = moto.kill(); // the run is over
        let _ = moto.wait();
        r
    }

    fn restore_pattern_on(&self, a: &RestorePatternArgs, root: &Path, port: u16) -> Result<()> {
        reset_moto(port)?;
        let small = root.join("small");
        eprintln!(
            "restore-pattern: building and backing up {} databases...",
            a.count
        );
        self.lsdemo_build(&a.lsdemo, &small, a.count)?;
        let backup = self.back_up(&small, port, "small")?;
        eprintln!("restore-pattern: backed up in {backup:.1}s; restoring...");
        let ours = self.ours_restore(a, &small, port, "small")?;
        let ours_rate = a.count as f64 / ours;
        // The same fleet from a file replica: what the tool does when the
        // store is not the bottleneck (moto serves about 300 requests/s
        // from one Python process).
        let rep = root.join("small-replica");
        let mut c = self.ours();
        c.args(["run", "--once", "--workers", "16", "--pattern"])
            .arg(format!("{}/**/*.db", small.display()))
            .args(["--replica", &format!("file://{}/{{path}}", rep.display())]);
        measure(c)?;
        let file =
            self.ours_restore_url(a, &small, &format!("file://{}/**/*.db", rep.display()))?;
        let file_rate = a.count as f64 / file;
        let dbs = databases(&small)?;
        let go_n = a.go_count.min(dbs.len());
        eprintln!("restore-pattern: Go, {go_n} restores one at a time...");
        let go = self.go_restore_loop(&dbs[..go_n], port, "small")?;
        let go_rate = go_n as f64 / go;
        println!(
            "### {} small databases from moto, {} workers\n\n\
             | | databases/s | time for {} databases |\n|---|---|---|\n\
             | litestreampp restore-pattern (median of {}) | **{ours_rate:.0}** | {ours:.1} s |\n\
             | Go `litestream restore`, one process per database ({go_n} databases) | {go_rate:.1} | {:.0} s (extrapolated) |\n\
             | ratio | **{:.0}×** | |\n\
             | litestreampp restore-pattern from a file replica of the same fleet | {file_rate:.0} | {file:.1} s |\n\n\
             (Backed up first with `litestreampp run --once`: {backup:.1} s.)\n",
            a.count,
            a.workers,
            a.count,
            a.runs,
            a.count as f64 / go_rate,
            ours_rate / go_rate,
        );

        if a.large == 0 {
            return Ok(());
        }
        let mix = root.join("mix");
        eprintln!(
            "restore-pattern: the mix, {} small and {} of {} MiB...",
            a.mix_small, a.large, a.large_mb
        );
        self.lsdemo_build(&a.lsdemo, &mix, a.mix_small)?;
        let big = self.work.join(format!("source-{}m.db", a.large_mb));
        generate_db(&big, a.large_mb)?;
        std::fs::create_dir_all(mix.join("large"))?;
        for i in 0..a.large {
            std::fs::copy(&big, mix.join(format!("large/big{i}.db")))?;
        }
        let mix_bytes: u64 = databases(&mix)?
            .iter()
            .map(|r| std::fs::metadata(mix.join(r)).map(|m| m.len()).unwrap_or(0))
            .sum();
        let backup = self.back_up(&mix, port, "mix")?;
        let ours = self.ours_restore(a, &mix, port, "mix")?;
        let mix_dbs = databases(&mix)?;
        eprintln!("restore-pattern: Go on the mix, one at a time...");
        let go = self.go_restore_loop(&mix_dbs, port, "mix")?;
        println!(
            "### A mix: {} small databases and {} of {} MiB ({:.0} MiB in all), {} workers\n\n\
             | | time | MiB/s |\n|---|---|---|\n\
             | litestreampp restore-pattern (median of {}) | **{ours:.1} s** | {:.0} |\n\
             | Go `litestream restore`, one process per database | {go:.1} s | {:.0} |\n\
             | ratio | **{:.1}×** | |\n\n\
             (Backed up first with `litestreampp run --once`: {backup:.1} s.)\n",
            a.mix_small,
            a.large,
            a.large_mb,
            mix_bytes as f64 / 1048576.0,
            a.workers,
            a.runs,
            mix_bytes as f64 / 1048576.0 / ours,
            mix_bytes as f64 / 1048576.0 / go,
            go / ours,
        );
        Ok(())
    }
}
