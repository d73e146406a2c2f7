//! `litestreampp databases [-json] [GLOB]`: the databases of a config
//! file, in Litestream's shape (`path`, `replica` type). Without a glob a
//! directory entry is one line (its glob); with one, the databases found
//! under directory entries are listed one by one, each with its replica.

use std::process::ExitCode;

use anyhow::Result;

use super::table::Table;
use crate::flags::DatabasesArgs;
use crate::settings::{load_config, local_databases};

pub fn run(args: DatabasesArgs) -> Result<ExitCode> {
    let cfg = load_config(args.config.config.as_deref(), !args.config.no_expand_env)?;
    let dbs = local_databases(&cfg, args.glob.is_some(), args.glob.as_deref())?;
    // (path, replica type, replica as written, credentials masked)
    let mut rows: Vec<(String, String, String)> = dbs
        .iter()
        .map(|d| {
            let (kind, url) = d
                .replica
                .as_ref()
                .map_or(("".into(), "".into()), |r| (r.kind.clone(), r.describe()));
            (d.path.display().to_string(), kind, url)
        })
        .collect();
    if args.glob.is_none() {
        for d in &cfg.dirs {
            rows.push((
                d.glob(),
                d.replica.kind.clone(),
                format!("{}/<relative path>", d.replica.describe()),
            ));
        }
    }
    if args.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(path, kind, url)| serde_json::json!({"path": path, "replica": kind, "url": url}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&["path", "replica"]);
    for (path, kind, _) in rows {
        t.row(vec![path, kind]);
    }
    t.print();
    Ok(ExitCode::SUCCESS)
}
