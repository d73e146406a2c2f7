//! The replica client conformance suite against the `file` backend, plus
//! the layout facts Litestream's file replicas depend on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use litestreampp_core::TxId;
use litestreampp_core::client::file::FileReplicaClient;
use litestreampp_core::client::{LtxBody, ReplicaClient, conformance};

#[tokio::test]
async fn file_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let c = FileReplicaClient::new(dir.path().join("replica"));
    conformance::run(&c).await;
}

#[tokio::test]
async fn file_layout_and_mtime() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("r");
    let c = FileReplicaClient::new(&root);
    let ts = 1_650_000_000_456;
    c.write_ltx_file(
        9,
        TxId(1),
        TxId(0x1f),
        LtxBody::Bytes(conformance::sample_ltx(1, 0x1f, ts, 2)),
    )
    .await
    .unwrap();
    let p = root.join("ltx/9/0000000000000001-000000000000001f.ltx");
    let md = std::fs::metadata(&p).unwrap();
    let mtime = md
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert_eq!(mtime.as_millis() as i64, ts);
    // Nothing else at the root or next to the file.
    let names: Vec<_> = std::fs::read_dir(root.join("ltx/9"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1);
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1);
}
