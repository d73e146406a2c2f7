//! Mapping SDK errors to the core's [`Error`]: not found, precondition
//! failed, and transient or permanent backend errors, each with the whole
//! chain of causes.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::error::Error;

pub(super) fn backend(context: &str, message: &str, transient: bool) -> Error {
    Error::Backend {
        context: context.to_string(),
        message: message.to_string(),
        transient,
    }
}

/// Maps an SDK error to the core's kinds: missing objects and buckets,
/// failed preconditions, transient failures (throttling, 5xx, timeouts,
/// connection errors) and the rest. Messages never include credentials.
pub(crate) fn map_err<E>(
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    context: &str,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("").to_string();
            let msg = se.err().message().unwrap_or("").to_string();
            let status = se.raw().status().as_u16();
            let text = if msg.is_empty() {
                code.clone()
            } else {
                format!("{code}: {msg}")
            };
            match (code.as_str(), status) {
                ("NoSuchKey" | "NotFound", _) | (_, 404) if code != "NoSuchBucket" => {
                    Error::NotFound {
                        what: context.to_string(),
                    }
                }
                ("PreconditionFailed" | "ConditionalRequestConflict", _) | (_, 412) => {
                    Error::PreconditionFailed {
                        what: context.to_string(),
                    }
                }
                (
                    "SlowDown"
                    | "Throttling"
                    | "ThrottlingException"
                    | "RequestTimeout"
                    | "InternalError"
                    | "ServiceUnavailable",
                    _,
                ) => backend(context, &text, true),
                (_, s) if s >= 500 || s == 429 => {
                    backend(context, &format!("HTTP {s} {text}"), true)
                }
                _ => backend(
                    context,
                    if text.is_empty() {
                        "request failed"
                    } else {
                        &text
                    },
                    false,
                ),
            }
        }
        SdkError::TimeoutError(_) => backend(context, "timed out", true),
        SdkError::DispatchFailure(d) => {
            let why = if d.is_timeout() {
                "timed out"
            } else if d.is_io() {
                "connection failed"
            } else {
                "request could not be sent"
            };
            backend(context, &format!("{why}: {}", source_chain(&e)), true)
        }
        SdkError::ResponseError(_) => backend(
            context,
            &format!("bad response: {}", source_chain(&e)),
            true,
        ),
        SdkError::ConstructionFailure(_) => backend(
            context,
            &format!("invalid request: {}", source_chain(&e)),
            false,
        ),
        _ => backend(context, &source_chain(&e), true),
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let parts = crate::error::causes(e);
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}
