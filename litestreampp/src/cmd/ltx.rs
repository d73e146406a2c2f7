//! `litestreampp ltx`: list a replica's LTX files.

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use litestreampp_core::client::{SNAPSHOT_LEVEL, list_all};

use super::table::Table;
use super::{init_logging, runtime};
use crate::flags::LtxArgs;
use crate::settings::resolve_target;

pub fn run(args: LtxArgs) -> Result<ExitCode> {
    init_logging(None);
    let levels: Vec<u32> = if args.level == "all" {
        (0..=SNAPSHOT_LEVEL).collect()
    } else {
        let l: u32 = args
            .level
            .parse()
            .ok()
            .filter(|l| *l <= SNAPSHOT_LEVEL)
            .ok_or_else(|| anyhow!("-level {:?}: expected 0-9 or all", args.level))?;
        vec![l]
    };
    let (client, _) = resolve_target(
        &args.target,
        args.config.config.as_deref(),
        !args.config.no_expand_env,
    )?;
    let rt = runtime()?;
    let files = rt.block_on(async {
        let mut all = Vec::new();
        for l in levels {
            all.extend(list_all(client.as_ref(), l, false).await?);
        }
        Ok::<_, litestreampp_core::Error>(all)
    })?;
    if args.json {
        let v: Vec<serde_json::Value> = files.iter().map(super::file_info_json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&["level", "min_txid", "max_txid", "size", "created"]);
    for f in &files {
        t.row(vec![
            f.level.to_string(),
            f.min_txid.to_string(),
            f.max_txid.to_string(),
            f.size.to_string(),
            super::timestamp(f),
        ]);
    }
    t.print();
    Ok(ExitCode::SUCCESS)
}
