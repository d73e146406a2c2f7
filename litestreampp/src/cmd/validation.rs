//! `validation.interval`: Litestream's periodic check of each replica.
//! Every level below the snapshots is listed and its files must follow
//! one another (no TXID gap, no overlap); what is wrong is logged as a
//! warning with the level and the kind of fault, as Litestream logs it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use litestreampp_core::client::ReplicaClient;
use litestreampp_core::levels::validate_replica;

use super::Background;

/// Checks the replicas `dbs` gives at each tick (levels 0 to
/// `top_level`; databases registered or unregistered meanwhile included
/// or not) every `interval` until the returned guard is dropped.
pub fn spawn(
    dbs: impl Fn() -> Vec<(PathBuf, Arc<dyn ReplicaClient>)> + Send + 'static,
    top_level: u32,
    interval: Duration,
) -> Background {
    Background::spawn(async move {
        tracing::info!(interval = ?interval, "starting validation monitor");
        let mut tick = tokio::time::interval(interval);
        tick.tick().await; // the first tick is immediate
        loop {
            tick.tick().await;
            for (path, client) in dbs() {
                validate_replica(client.as_ref(), &path, top_level).await;
            }
        }
    })
}
