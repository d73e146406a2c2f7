//! `litestreampp databases`: the databases of a config file.

use std::process::ExitCode;

use anyhow::Result;

use crate::flags::ConfigArgs;
use crate::settings::load_config;

pub fn run(args: ConfigArgs) -> Result<ExitCode> {
    let cfg = load_config(args.config.as_deref(), !args.no_expand_env)?;
    println!("path\treplica");
    for db in &cfg.dbs {
        let r = db
            .replica
            .as_ref()
            .map(|r| r.describe())
            .unwrap_or_else(|| "-".into());
        println!("{}\t{r}", db.path.display());
    }
    for d in &cfg.dirs {
        println!(
            "{} (each database under it)\t{}/<relative path>",
            d.glob(),
            d.replica.describe()
        );
    }
    Ok(ExitCode::SUCCESS)
}
