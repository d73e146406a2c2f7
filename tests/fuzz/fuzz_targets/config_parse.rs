//! The config parser on any text: a config is accepted or refused with an
//! error, and everything read from an accepted one (replica settings,
//! durations, sizes) is too; nothing panics.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use litestreampp::settings::{expand_env_vars, parse_config, parse_go_duration};
use litestreampp_core::redact::redact_url;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_go_duration(text);
    let _ = redact_url(text);
    let _ = expand_env_vars(text);
    let Ok(cfg) = parse_config(text, Path::new("fuzz.yml"), false) else {
        return;
    };
    let replicas = cfg.dbs.iter().filter_map(|d| d.replica.as_ref());
    for r in replicas.chain(cfg.dirs.iter().map(|d| &d.replica)) {
        let _ = r.describe();
        let _ = r.duration("sync-interval");
        let _ = r.with_relative_path("tenant/a.db");
        if r.kind == "s3" {
            let _ = r.s3_settings();
        }
    }
    for d in &cfg.dirs {
        let _ = d.glob();
    }
});
