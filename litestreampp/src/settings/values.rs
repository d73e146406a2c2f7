//! Values as Litestream reads them: `$VAR` expansion, `~` paths, Go
//! durations.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use litestreampp_core::TxId;
use litestreampp_core::restore::RestoreTarget;
use serde_json::Value;

/// `$VAR` and `${VAR}` expansion as Go's `os.ExpandEnv` does (unset
/// variables expand to nothing).
pub fn expand_env_vars(s: &str) -> String {
    // `PID` is this process's id, as in Go (for per-process meta paths).
    fn env_value(name: &str) -> String {
        if name == "PID" {
            return std::process::id().to_string();
        }
        std::env::var(name).unwrap_or_default()
    }
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'{' {
                if let Some(end) = s[i + 2..].find('}') {
                    let name = &s[i + 2..i + 2 + end];
                    out.push_str(&env_value(name));
                    i += 3 + end;
                    continue;
                }
            } else if b[i + 1] == b'_' || b[i + 1].is_ascii_alphabetic() {
                let mut j = i + 1;
                while j < b.len() && (b[j] == b'_' || b[j].is_ascii_alphanumeric()) {
                    j += 1;
                }
                out.push_str(&env_value(&s[i + 1..j]));
                i = j;
                continue;
            }
        }
        let ch = s[i..].chars().next().unwrap_or('\0');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

/// An absolute path: `~` expanded, relative paths joined to the current
/// directory, `sqlite://` prefixes removed (as Litestream does).
pub fn expand_path(s: &str) -> Result<PathBuf> {
    let s = s
        .strip_prefix("sqlite3://")
        .or_else(|| s.strip_prefix("sqlite://"))
        .unwrap_or(s);
    let p = if s == "~" || s.starts_with("~/") {
        let home =
            std::env::var_os("HOME").ok_or_else(|| anyhow!("cannot expand ~: HOME is not set"))?;
        PathBuf::from(home).join(s.trim_start_matches('~').trim_start_matches('/'))
    } else {
        PathBuf::from(s)
    };
    if p.is_absolute() {
        Ok(p)
    } else {
        Ok(std::env::current_dir()
            .context("current directory")?
            .join(p))
    }
}

pub(super) fn parse_duration_value(v: &Value) -> Result<Duration> {
    match v {
        Value::String(s) => parse_go_duration(s),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(Duration::ZERO),
        other => bail!("expected a duration such as \"1s\" or \"500ms\", got {other}"),
    }
}

/// Parses a Go duration: `300ms`, `1.5h`, `1h30m`, `2s`.
pub fn parse_go_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = t;
    let mut total = 0f64;
    if rest.is_empty() {
        bail!("empty duration");
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            bail!("invalid duration {s:?}");
        }
        let n: f64 = rest[..num_end]
            .parse()
            .map_err(|_| anyhow!("invalid duration {s:?}"))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => bail!("invalid duration {s:?}: unknown unit {u:?}"),
        };
        total += n * secs;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| anyhow!("duration {s:?} is out of range"))
}

/// The restore target of `-txid` / `-timestamp` (neither: the latest).
pub fn restore_target(txid: Option<&str>, timestamp: Option<&str>) -> Result<RestoreTarget> {
    Ok(match (txid, timestamp) {
        (Some(_), Some(_)) => bail!("cannot specify both -txid and -timestamp"),
        (Some(t), None) => {
            RestoreTarget::TxId(t.parse::<TxId>().map_err(|e| anyhow!("-txid: {e}"))?)
        }
        (None, Some(ts)) => RestoreTarget::Timestamp(parse_timestamp(ts, jiff::Timestamp::now())?),
        (None, None) => RestoreTarget::Latest,
    })
}

/// `-timestamp`: RFC 3339, or `-<Go duration>` before `now`.
pub fn parse_timestamp(s: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp> {
    if let Some(d) = s.strip_prefix('-') {
        let d = parse_go_duration(d).map_err(|e| anyhow!("-timestamp {s:?}: {e}"))?;
        let span =
            jiff::SignedDuration::try_from(d).map_err(|e| anyhow!("-timestamp {s:?}: {e}"))?;
        return now
            .checked_sub(span)
            .map_err(|e| anyhow!("-timestamp {s:?}: {e}"));
    }
    s.parse::<jiff::Timestamp>().map_err(|e| {
        anyhow!(
            "-timestamp {s:?}: expected RFC 3339 (2026-01-02T15:04:05Z) or a duration before now (-5m): {e}"
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_absolute_and_relative() {
        let now: jiff::Timestamp = "2026-11-22T12:00:00Z".parse().unwrap();
        let p = |s| parse_timestamp(s, now).map(|t| t.to_string());
        assert_eq!(p("-5m").unwrap(), "2026-11-22T11:55:00Z");
        assert_eq!(p("-1h30m").unwrap(), "2026-11-22T10:30:00Z");
        assert_eq!(p("-0s").unwrap(), "2026-11-22T12:00:00Z");
        assert_eq!(
            p("2026-01-02T15:04:05.5Z").unwrap(),
            "2026-01-02T15:04:05.5Z"
        );
        assert!(
            p("-5 minutes")
                .unwrap_err()
                .to_string()
                .contains("-5 minutes")
        );
        assert!(p("yesterday").unwrap_err().to_string().contains("RFC 3339"));
    }

    #[test]
    fn one_restore_target_at_most() {
        assert!(matches!(
            restore_target(None, None).unwrap(),
            RestoreTarget::Latest
        ));
        let e = restore_target(Some("1"), Some("-5m")).unwrap_err();
        assert!(e.to_string().contains("both"), "{e}");
        let e = restore_target(Some("xyz"), None).unwrap_err();
        assert!(e.to_string().contains("-txid"), "{e}");
    }
}
