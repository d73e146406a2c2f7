//! Restore planning (Litestream's algorithm): the shortest chain of files
//! for a target, a snapshot first, then the highest levels down to L0.

use crate::client::{FileInfo, ReplicaClient, SNAPSHOT_LEVEL, list_all};
use crate::error::{Error, Result};
use crate::txid::TxId;

use super::{RestorePlan, RestoreTarget};

/// Restore candidate order: highest max TXID, then lowest min, then higher
/// level, then older (Litestream's `restoreCandidateBetter`).
fn better(cur: &FileInfo, next: &FileInfo) -> bool {
    if next.max_txid != cur.max_txid {
        return next.max_txid > cur.max_txid;
    }
    if next.min_txid != cur.min_txid {
        return next.min_txid < cur.min_txid;
    }
    if next.level != cur.level {
        return next.level > cur.level;
    }
    next.created_at < cur.created_at
}

/// Plans the chain of files for `target` (spec §4, steps 1–3).
pub async fn plan_restore(
    client: &dyn ReplicaClient,
    target: RestoreTarget,
) -> Result<RestorePlan> {
    let use_metadata = matches!(target, RestoreTarget::Timestamp(_));
    let loc = client.location();
    let snapshots = list_all(client, SNAPSHOT_LEVEL, use_metadata).await?;
    let mut levels = Vec::new();
    for level in (0..SNAPSHOT_LEVEL).rev() {
        levels.push(list_all(client, level, use_metadata).await?);
    }
    plan_listed(&loc, snapshots, levels, target)
}

/// Plans a restore from files already listed (every level, as from
/// [`ReplicaClient::all_ltx_files`] or a listing of many replicas at once):
/// no request is made. `created_at` must be exact for
/// [`RestoreTarget::Timestamp`] (S3 listings give the upload time; use
/// [`plan_restore`] there).
pub fn plan_from_files(
    location: &str,
    files: Vec<FileInfo>,
    target: RestoreTarget,
) -> Result<RestorePlan> {
    let mut snapshots = Vec::new();
    let mut levels: Vec<Vec<FileInfo>> = vec![Vec::new(); SNAPSHOT_LEVEL as usize];
    for f in files {
        match f.level {
            SNAPSHOT_LEVEL => snapshots.push(f),
            // Highest level first, as plan_restore lists them.
            l if l < SNAPSHOT_LEVEL => levels[(SNAPSHOT_LEVEL - 1 - l) as usize].push(f),
            _ => {}
        }
    }
    for l in &mut levels {
        l.sort_by_key(|f| (f.min_txid, f.max_txid));
    }
    plan_listed(location, snapshots, levels, target)
}

/// Steps 1–3 of the plan over listed files: `levels` holds levels 8 down
/// to 0.
fn plan_listed(
    loc: &str,
    snapshots: Vec<FileInfo>,
    levels: Vec<Vec<FileInfo>>,
    target: RestoreTarget,
) -> Result<RestorePlan> {
    let fits = |f: &FileInfo| match target {
        RestoreTarget::Latest => true,
        RestoreTarget::TxId(t) => f.max_txid <= t,
        RestoreTarget::Timestamp(ts) => f.created_at < ts,
    };
    let mut files = Vec::new();
    if let Some(s) = snapshots.iter().filter(|f| fits(f)).max_by(|a, b| {
        a.max_txid
            .cmp(&b.max_txid)
            .then(a.created_at.cmp(&b.created_at))
    }) {
        files.push(s.clone());
    }
    let mut cur = files.last().map(|f| f.max_txid).unwrap_or(TxId::ZERO);
    let any_files = !snapshots.is_empty() || levels.iter().any(|l| !l.is_empty());
    if !any_files {
        return Err(Error::NotFound {
            what: format!("replica {loc}: no backup files"),
        });
    }
    let done = |cur: TxId| matches!(target, RestoreTarget::TxId(t) if cur >= t);
    while !done(cur) {
        let mut best: Option<&FileInfo> = None;
        for f in levels.iter().flatten() {
            if f.min_txid.0 <= cur.0 + 1
                && f.max_txid > cur
                && fits(f)
                && best.is_none_or(|b| better(b, f))
            {
                best = Some(f);
            }
        }
        let Some(b) = best else { break };
        cur = b.max_txid;
        files.push(b.clone());
    }
    if files.is_empty() {
        return Err(Error::TxNotAvailable {
            what: format!("replica {loc}: no snapshot or file starting at TXID 1 fits the target"),
        });
    }
    match target {
        RestoreTarget::TxId(t) if cur != t => {
            return Err(Error::TxNotAvailable {
                what: format!("replica {loc}: TXID {t} (files reach {cur})"),
            });
        }
        RestoreTarget::Latest => {
            if let Some(gap) = levels.iter().flatten().find(|f| f.min_txid.0 > cur.0 + 1) {
                return Err(Error::corrupt(
                    format!("replica {loc}"),
                    format!(
                        "TXID gap: files reach {cur} but level {} has {} starting at {}",
                        gap.level,
                        gap.file_name(),
                        gap.min_txid
                    ),
                ));
            }
        }
        _ => {}
    }
    Ok(RestorePlan { files, txid: cur })
}
