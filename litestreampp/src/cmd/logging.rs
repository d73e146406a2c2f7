//! Logging as Litestream's `logging:` section configures it: a level, text
//! or JSON lines (`time`, `level`, `msg` and the fields, as Go's slog
//! writes them), stdout or stderr, and optionally the source line.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::settings::LoggingConfig;

/// The HTTP and AWS layers stay at warn whatever the level: their debug
/// output includes request headers.
const QUIET: &str = "aws_config=warn,aws_smithy_runtime=warn,aws_smithy_runtime_api=warn,aws_sigv4=warn,aws_smithy_http_client=warn,aws_sdk_s3=warn,hyper=warn,hyper_util=warn,rustls=warn,h2=warn";

/// Logging to stderr at `level` (or the environment's, or `info`).
pub fn init_logging(level: Option<&str>) {
    init_logging_with(level, &LoggingConfig::default());
}

/// Logging as `cfg` says. The level is, first to last: `flag_level`,
/// `LOG_LEVEL` (Go's), `LITESTREAM_LOG_LEVEL`, the config's, `RUST_LOG` (a
/// full filter, taken as written), `info`. Logs go to stderr unless the
/// config says `stderr: false` (Go's default is stdout; ours keeps stdout
/// for command output).
pub fn init_logging_with(flag_level: Option<&str>, cfg: &LoggingConfig) {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let filter = flag_level
        .map(str::to_string)
        .or_else(|| env("LOG_LEVEL"))
        .or_else(|| env("LITESTREAM_LOG_LEVEL"))
        .or_else(|| cfg.level.clone())
        .map(|l| format!("{},{QUIET}", level_name(&l)))
        .or_else(|| env("RUST_LOG"))
        .unwrap_or_else(|| format!("info,{QUIET}"));
    let filter = tracing_subscriber::EnvFilter::try_new(filter.to_lowercase())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let to_stdout = cfg.stderr == Some(false);
    let writer = move || -> Box<dyn std::io::Write> {
        if to_stdout {
            Box::new(std::io::stdout())
        } else {
            Box::new(std::io::stderr())
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    // Already initialised (in tests): keep the first.
    let _ = if cfg.json {
        builder
            .event_format(GoJson { source: cfg.source })
            .try_init()
    } else {
        let tty = if to_stdout {
            std::io::IsTerminal::is_terminal(&std::io::stdout())
        } else {
            std::io::IsTerminal::is_terminal(&std::io::stderr())
        };
        builder
            .with_ansi(tty)
            .with_file(cfg.source)
            .with_line_number(cfg.source)
            .try_init()
    };
}

/// Go's level names (`WARNING` too) as tracing's.
fn level_name(l: &str) -> String {
    match l.to_lowercase().as_str() {
        "warning" => "warn".to_string(),
        other => other.to_string(),
    }
}

/// One JSON object per line, with Go slog's keys.
struct GoJson {
    source: bool,
}

impl<S, N> FormatEvent<S, N> for GoJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = serde_json::Map::new();
        fields.insert("time".into(), jiff::Timestamp::now().to_string().into());
        fields.insert("level".into(), meta.level().as_str().into());
        if self.source {
            fields.insert(
                "source".into(),
                serde_json::json!({"file": meta.file(), "line": meta.line()}),
            );
        }
        fields.insert("msg".into(), "".into());
        event.record(&mut JsonFields(&mut fields));
        writeln!(writer, "{}", serde_json::Value::Object(fields))
    }
}

struct JsonFields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl JsonFields<'_> {
    fn put(&mut self, field: &Field, v: serde_json::Value) {
        let key = match field.name() {
            "message" => "msg",
            k => k,
        };
        self.0.insert(key.to_string(), v);
    }
}

impl Visit for JsonFields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
}
