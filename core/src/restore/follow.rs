//! Follow mode (`restore -f`, Litestream's): after the restore, keep
//! applying the replica's new LTX files to the output, so it serves as a
//! read replica.
//!
//! Invariants:
//! - Every change reaches the output through SQLite's own write path:
//!   pages are written with the `sqlite_dbpage` virtual table inside one
//!   transaction of a WAL-mode connection. A reader sees either the whole
//!   of an applied step or none of it (its snapshot), and a follower killed
//!   mid-step leaves uncommitted WAL frames that SQLite ignores. (Go writes
//!   the file directly under SQLite's lock bytes and switches it to
//!   rollback mode; a kill there leaves a torn file until it resumes.)
//! - Each step applies the whole chain from our TXID to the newest file in
//!   one transaction, and every file's checksum is verified before the
//!   commit.
//! - `<output>-txid` (Litestream's format: the TXID in hex and a newline)
//!   is written after each commit. A kill between the two leaves it behind
//!   the database; re-applying files from there is harmless because the
//!   first step after a start goes through the newest file in its one
//!   transaction, so no reader sees older pages mixed with newer ones.
//! - A break in the chain (the files after our TXID were removed by
//!   retention, or the replica now ends before our TXID) is healed by
//!   restoring the newest state beside the output and copying the pages
//!   that differ into it, again in one transaction.

use std::fs::File;
use std::future::Future;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::{IntegrityCheck, RestoreOptions, RestoreTarget, restore};
use crate::client::{FileInfo, ReplicaClient, describe_file, read_range};
use crate::dbfile;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::ltx::{Decoder, lock_pgno};
use crate::txid::TxId;

/// Litestream's default `-follow-interval`.
pub const DEFAULT_FOLLOW_INTERVAL: Duration = Duration::from_secs(1);
/// Files up to this size are read whole, several at once; larger ones are
/// streamed while they are applied.
const WHOLE_FILE_BYTES: u64 = 8 << 20;
/// Files read ahead of the one being applied.
const READ_AHEAD: usize = 8;
/// A poll lists only level 0 after our TXID (one request); every this many
/// polls it lists the whole replica, which also finds a replica that went
/// back, or a file that starts before our TXID.
const FULL_LISTING_EVERY: u32 = 10;

/// Follow-mode settings.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    pub output: PathBuf,
    /// How often the replica is polled.
    pub interval: Duration,
    /// Range reads in flight during the first restore.
    pub parallelism: usize,
    /// Checks the first restore.
    pub integrity_check: IntegrityCheck,
}

/// What one poll applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub from: TxId,
    pub to: TxId,
    pub files: usize,
    /// True when the chain was broken and the newest state was restored.
    pub restored: bool,
}

/// `<output>-txid`, where the applied TXID is recorded (Litestream's name).
pub fn txid_path(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_os_string();
    s.push("-txid");
    PathBuf::from(s)
}

/// The TXID recorded beside `output`, if any.
pub fn read_txid_file(output: &Path) -> Result<Option<TxId>> {
    let path = txid_path(output);
    match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse::<TxId>().map(Some).map_err(|_| {
            Error::corrupt(
                path.display().to_string(),
                format!("expected a TXID (16 hex digits), found {:?}", s.trim()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}

/// Records `txid` beside `output`, atomically.
pub fn write_txid_file(output: &Path, txid: TxId) -> Result<()> {
    use std::io::Write;
    fsutil::write_atomic(&txid_path(output), |w| writeln!(w, "{txid}"))
}

/// Restores `client`'s database to `opts.output` (or resumes at the TXID
/// recorded beside an existing output) and applies new files every
/// `opts.interval` until `stop` resolves. Returns the TXID reached.
///
/// Failures of a poll (an unreachable replica, a file being replaced) are
/// logged and retried at the next one; the error of a poll that cannot
/// succeed later (a page size that differs) ends the follow.
pub async fn follow(
    client: Arc<dyn ReplicaClient>,
    opts: &FollowOptions,
    stop: impl Future<Output = ()>,
) -> Result<TxId> {
    tokio::pin!(stop);
    let out = opts.output.clone();
    // An empty file without a recorded TXID (a placeholder, or an open
    // that created it) is restored over, as a plain restore does.
    let placeholder = std::fs::symlink_metadata(&out).is_ok_and(|m| m.is_file() && m.len() == 0)
        && !txid_path(&out).exists();
    let txid = if std::fs::symlink_metadata(&out).is_ok() && !placeholder {
        let txid = read_txid_file(&out)?.ok_or_else(|| {
            Error::InvalidInput(format!(
                "cannot resume follow mode: {} exists but {} does not; delete the database to restore it again",
                out.display(),
                txid_path(&out).display()
            ))
        })?;
        tracing::info!(output = %out.display(), txid = %txid, "resuming follow mode");
        txid
    } else {
        let restored = restore(
            client.clone(),
            &RestoreOptions {
                output: out.clone(),
                target: RestoreTarget::Latest,
                overwrite: placeholder,
                integrity_check: opts.integrity_check,
                parallelism: opts.parallelism,
            },
        )
        .await?;
        write_txid_file(&out, restored.txid)?;
        restored.txid
    };
    let mut follower = Follower::open(client, opts, txid).await?;
    tracing::info!(output = %out.display(), txid = %txid, interval = ?opts.interval, "entering follow mode");
    let mut tick = tokio::time::interval(opts.interval.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        let step = tokio::select! {
            _ = &mut stop => break,
            r = follower.poll() => r,
        };
        match step {
            Ok(Some(a)) => {
                failures = 0;
                tracing::info!(from_txid = %a.from, to_txid = %a.to, files = a.files, restored = a.restored, "follow: applied updates");
            }
            Ok(None) => failures = 0,
            Err(e @ Error::InvalidInput(_)) => return Err(e),
            Err(e) => {
                failures += 1;
                tracing::error!(error = %e, consecutive_errors = failures, "follow: error applying updates");
            }
        }
    }
    tracing::info!(txid = %follower.txid, "follow mode stopped");
    Ok(follower.txid)
}

/// The output being followed and where it stands.
struct Follower {
    client: Arc<dyn ReplicaClient>,
    output: PathBuf,
    /// Our connection; `None` only while a step runs on the blocking pool.
    conn: Option<Connection>,
    page_size: u32,
    txid: TxId,
    polls: u32,
    parallelism: usize,
}

impl Follower {
    async fn open(
        client: Arc<dyn ReplicaClient>,
        opts: &FollowOptions,
        txid: TxId,
    ) -> Result<Self> {
        let path = opts.output.clone();
        let (conn, page_size) = tokio::task::spawn_blocking(move || open_output(&path))
            .await
            .map_err(|e| Error::io("follow: open", std::io::Error::other(e.to_string())))??;
        Ok(Follower {
            client,
            output: opts.output.clone(),
            conn: Some(conn),
            page_size,
            txid,
            polls: 0,
            parallelism: opts.parallelism.max(1),
        })
    }

    /// One poll: find the files after our TXID and apply them, or restore
    /// the newest state when they no longer follow on.
    async fn poll(&mut self) -> Result<Option<Applied>> {
        let full = self.polls.is_multiple_of(FULL_LISTING_EVERY);
        self.polls = self.polls.wrapping_add(1);
        let next = TxId(self.txid.0 + 1);
        let mut files = if full {
            self.client.all_ltx_files().await?
        } else {
            let mut l0 = self.client.ltx_files(0, next, false).await?;
            let mut files = Vec::new();
            while let Some(f) = l0.try_next().await? {
                files.push(f);
            }
            files
        };
        let mut listed_all = full;
        let mut chain = chain_after(&files, self.txid);
        if chain.is_empty() && !full && !files.is_empty() {
            // Level 0 starts past our TXID: compaction took those files.
            files = self.client.all_ltx_files().await?;
            listed_all = true;
            chain = chain_after(&files, self.txid);
        }
        if chain.is_empty() {
            // Files beyond ours that no chain reaches (retention), or a
            // replica that now ends before our TXID (it was reset).
            return match files.iter().map(|f| f.max_txid).max() {
                Some(newest) if listed_all && newest != self.txid => {
                    self.restore_newest(newest).await.map(Some)
                }
                _ => Ok(None),
            };
        }
        let from = self.txid;
        let to = chain[chain.len() - 1].max_txid;
        let files = chain.len();
        self.apply(chain).await?;
        self.txid = to;
        write_txid_file(&self.output, to)?;
        Ok(Some(Applied {
            from,
            to,
            files,
            restored: false,
        }))
    }

    /// Applies `chain` in one transaction: small files are read ahead, a
    /// large one is streamed into the transaction.
    async fn apply(&mut self, chain: Vec<FileInfo>) -> Result<()> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Source>>(READ_AHEAD);
        let client = self.client.clone();
        let reader = tokio::spawn(async move {
            let mut fetches = futures::stream::iter(chain)
                .map(|f| {
                    let c = client.clone();
                    async move {
                        if f.size <= WHOLE_FILE_BYTES {
                            let bytes = read_range(c.as_ref(), &f, 0, 0).await?;
                            Ok(Source::Bytes(f, bytes))
                        } else {
                            Ok(Source::Stream(f))
                        }
                    }
                })
                .buffered(READ_AHEAD);
            while let Some(s) = fetches.next().await {
                let failed = s.is_err();
                if tx.send(s).await.is_err() || failed {
                    break;
                }
            }
        });
        let client = self.client.clone();
        let page_size = self.page_size;
        let handle = tokio::runtime::Handle::current();
        let result = self
            .on_conn("follow: apply", move |conn| {
                apply_chain(conn, page_size, rx, client.as_ref(), &handle)
            })
            .await;
        reader.abort();
        result
    }

    /// Restores the newest state beside the output, then copies the pages
    /// that differ into it in one transaction.
    async fn restore_newest(&mut self, newest: TxId) -> Result<Applied> {
        tracing::warn!(
            output = %self.output.display(),
            txid = %self.txid,
            replica_txid = %newest,
            "follow: the replica's files no longer follow on from the applied TXID; restoring its newest state"
        );
        let scratch = fsutil::process_tmp_path(&self.output);
        let _ = std::fs::remove_file(&scratch); // a leftover of a killed follower
        let restored = restore(
            self.client.clone(),
            &RestoreOptions {
                output: scratch.clone(),
                target: RestoreTarget::Latest,
                overwrite: true,
                integrity_check: IntegrityCheck::None,
                parallelism: self.parallelism,
            },
        )
        .await;
        let restored = match restored {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_file(&scratch); // never left behind
                return Err(e);
            }
        };
        let page_size = self.page_size;
        let from_file = scratch.clone();
        let result = self
            .on_conn("follow: copy", move |conn| {
                copy_pages(conn, page_size, &from_file)
            })
            .await;
        let _ = std::fs::remove_file(&scratch); // its content is in the output now, or the error says why not
        let _ = dbfile::remove_side_files(&scratch);
        let changed = result?;
        let from = self.txid;
        self.txid = restored.txid;
        write_txid_file(&self.output, restored.txid)?;
        tracing::info!(pages = changed, txid = %restored.txid, "follow: newest state restored");
        Ok(Applied {
            from,
            to: restored.txid,
            files: restored.files,
            restored: true,
        })
    }

    /// Runs `f` with our connection on the blocking pool.
    async fn on_conn<T: Send + 'static>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let mut conn = self.conn.take().ok_or_else(|| {
            Error::InvalidInput(format!(
                "follow {}: the connection was lost when a step's task failed",
                self.output.display()
            ))
        })?;
        let (conn, r) = tokio::task::spawn_blocking(move || {
            let r = f(&mut conn);
            (conn, r)
        })
        .await
        .map_err(|e| Error::io(what, std::io::Error::other(e.to_string())))?;
        self.conn = Some(conn);
        r
    }
}

/// A file of the chain: in memory, or to be streamed.
enum Source {
    Bytes(FileInfo, Vec<u8>),
    Stream(FileInfo),
}

/// The files that carry the database on from `txid`: at each step the
/// lowest level holding a file that starts at or before the next TXID and
/// ends after the current one (level 0 files are the smallest), the newest
/// such file of that level.
pub fn chain_after(files: &[FileInfo], txid: TxId) -> Vec<FileInfo> {
    let mut chain: Vec<FileInfo> = Vec::new();
    let mut cur = txid;
    loop {
        let best = files
            .iter()
            .filter(|f| f.min_txid.0 <= cur.0 + 1 && f.max_txid > cur)
            .min_by(|a, b| a.level.cmp(&b.level).then(b.max_txid.cmp(&a.max_txid)));
        match best {
            Some(f) => {
                cur = f.max_txid;
                chain.push(f.clone());
            }
            None => return chain,
        }
    }
}

/// Opens the output for following: WAL mode (the source's), a busy timeout
/// for the readers' checkpoints, and `sqlite_dbpage` present.
fn open_output(path: &Path) -> Result<(Connection, u32)> {
    let name = path.display().to_string();
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| Error::sqlite(format!("open {name} for follow mode"), e))?;
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(|e| Error::sqlite(format!("{name}: busy timeout"), e))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(|e| Error::sqlite(format!("{name}: journal_mode=WAL"), e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::InvalidInput(format!(
            "{name}: cannot switch to WAL mode for following (journal mode stays {mode})"
        )));
    }
    if let Err(e) = conn.prepare("SELECT pgno FROM sqlite_dbpage WHERE pgno = 1") {
        return Err(Error::InvalidInput(format!(
            "{name}: follow mode needs SQLite's sqlite_dbpage table (SQLITE_ENABLE_DBPAGE_VTAB), which this build lacks: {e}"
        )));
    }
    let page_size: u32 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(|e| Error::sqlite(format!("{name}: page_size"), e))?;
    Ok((conn, page_size))
}

const PUT_PAGE: &str = "INSERT INTO sqlite_dbpage(pgno, data) VALUES (?1, ?2)";
/// Inserting a NULL page N truncates the database to N-1 pages at commit.
const TRUNCATE: &str = "INSERT INTO sqlite_dbpage(pgno, data) VALUES (?1, NULL)";

/// Applies the files arriving on `rx` in one transaction; any error rolls
/// it back.
fn apply_chain(
    conn: &mut Connection,
    page_size: u32,
    mut rx: tokio::sync::mpsc::Receiver<Result<Source>>,
    client: &dyn ReplicaClient,
    handle: &tokio::runtime::Handle,
) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| Error::sqlite("follow: begin", e))?;
    let mut commit = None;
    {
        let mut put = tx
            .prepare_cached(PUT_PAGE)
            .map_err(|e| Error::sqlite("follow: prepare", e))?;
        let mut buf = vec![0u8; page_size as usize];
        while let Some(source) = rx.blocking_recv() {
            let (info, reader): (FileInfo, Box<dyn Read>) = match source? {
                Source::Bytes(f, b) => (f, Box::new(std::io::Cursor::new(b))),
                Source::Stream(f) => {
                    let r = handle
                        .block_on(client.open_ltx_file(f.level, f.min_txid, f.max_txid, 0, 0))?;
                    let r = tokio_util::io::SyncIoBridge::new_with_handle(r, handle.clone());
                    (f, Box::new(std::io::BufReader::with_capacity(1 << 20, r)))
                }
            };
            let key = describe_file(client, &info);
            let mut dec = Decoder::new(reader, key.clone())?;
            let h = *dec.header();
            if (h.min_txid, h.max_txid) != (info.min_txid, info.max_txid) {
                return Err(Error::corrupt(
                    key,
                    format!("header says TXIDs {}-{}", h.min_txid, h.max_txid),
                ));
            }
            if h.page_size != page_size {
                return Err(Error::InvalidInput(format!(
                    "{key}: page size {} differs from the followed database's {page_size}",
                    h.page_size
                )));
            }
            while let Some(frame) = dec.next_page(&mut buf)? {
                put.execute(rusqlite::params![frame.pgno, &buf[..]])
                    .map_err(|e| {
                        Error::sqlite(format!("follow: write page {} of {key}", frame.pgno), e)
                    })?;
            }
            dec.finish()?;
            commit = Some(h.commit);
        }
    }
    if let Some(c) = commit {
        tx.execute(TRUNCATE, [c + 1])
            .map_err(|e| Error::sqlite("follow: truncate", e))?;
    }
    tx.commit().map_err(|e| Error::sqlite("follow: commit", e))
}

/// Copies every page of the database file `from` that differs from the
/// output into it, and truncates the output to its size, in one
/// transaction. Returns how many pages changed.
fn copy_pages(conn: &mut Connection, page_size: u32, from: &Path) -> Result<u64> {
    let name = from.display().to_string();
    let f = File::open(from).ctx(|| format!("open {name}"))?;
    let len = f.metadata().ctx(|| format!("stat {name}"))?.len();
    let mut hdr = [0u8; 2];
    f.read_exact_at(&mut hdr, 16)
        .ctx(|| format!("read the header of {name}"))?;
    let theirs = match u16::from_be_bytes(hdr) {
        1 => 65536,
        n => n as u32,
    };
    if theirs != page_size || len % page_size as u64 != 0 {
        return Err(Error::InvalidInput(format!(
            "{name}: page size {theirs} ({len} bytes) differs from the followed database's {page_size}"
        )));
    }
    let pages = (len / page_size as u64) as u32;
    let lock = lock_pgno(page_size);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| Error::sqlite("follow: begin", e))?;
    let mut changed = 0u64;
    {
        let mut get = tx
            .prepare("SELECT data FROM sqlite_dbpage WHERE pgno = ?1")
            .map_err(|e| Error::sqlite("follow: prepare", e))?;
        let mut put = tx
            .prepare(PUT_PAGE)
            .map_err(|e| Error::sqlite("follow: prepare", e))?;
        let mut buf = vec![0u8; page_size as usize];
        for pgno in (1..=pages).filter(|&p| p != lock) {
            f.read_exact_at(&mut buf, (pgno as u64 - 1) * page_size as u64)
                .ctx(|| format!("read page {pgno} of {name}"))?;
            let ours: Option<Vec<u8>> = get
                .query_row([pgno], |r| r.get(0))
                .optional()
                .map_err(|e| Error::sqlite(format!("follow: read page {pgno}"), e))?;
            if ours.as_deref() != Some(&buf[..]) {
                put.execute(rusqlite::params![pgno, &buf[..]])
                    .map_err(|e| Error::sqlite(format!("follow: write page {pgno}"), e))?;
                changed += 1;
            }
        }
    }
    tx.execute(TRUNCATE, [pages + 1])
        .map_err(|e| Error::sqlite("follow: truncate", e))?;
    tx.commit()
        .map_err(|e| Error::sqlite("follow: commit", e))?;
    Ok(changed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn f(level: u32, min: u64, max: u64) -> FileInfo {
        FileInfo {
            level,
            min_txid: TxId(min),
            max_txid: TxId(max),
            size: 100,
            created_at: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    fn ends(chain: &[FileInfo]) -> Vec<(u32, u64, u64)> {
        chain
            .iter()
            .map(|f| (f.level, f.min_txid.0, f.max_txid.0))
            .collect()
    }

    #[test]
    fn chains_prefer_level_zero_and_bridge_gaps_from_higher_levels() {
        let files = [f(0, 6, 6), f(0, 7, 7), f(1, 1, 5), f(1, 6, 7), f(9, 1, 7)];
        assert_eq!(ends(&chain_after(&files, TxId(5))), [(0, 6, 6), (0, 7, 7)]);
        // Level 0 from 4 was compacted away: level 1 bridges it.
        assert_eq!(
            ends(&chain_after(&files, TxId(3))),
            [(1, 1, 5), (0, 6, 6), (0, 7, 7)]
        );
        // Nothing bridges the gap after 8 (retention): no chain.
        assert!(chain_after(&[f(0, 10, 10)], TxId(8)).is_empty());
        // Up to date.
        assert!(chain_after(&files, TxId(7)).is_empty());
        // Only the snapshot level reaches past 2.
        assert_eq!(ends(&chain_after(&[f(9, 1, 9)], TxId(2))), [(9, 1, 9)]);
    }

    #[test]
    fn txid_file_is_litestreams_format() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("db");
        assert_eq!(read_txid_file(&out).unwrap(), None);
        write_txid_file(&out, TxId(0x2a)).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("db-txid")).unwrap(),
            "000000000000002a\n"
        );
        assert_eq!(read_txid_file(&out).unwrap(), Some(TxId(0x2a)));
        std::fs::write(dir.path().join("db-txid"), "nonsense").unwrap();
        let e = read_txid_file(&out).unwrap_err().to_string();
        assert!(e.contains("db-txid"), "{e}");
    }
}
