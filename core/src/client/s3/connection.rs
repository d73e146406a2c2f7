//! S3 connections: one SDK client (one connection pool) per endpoint,
//! region and credentials, shared by every replica that uses them.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use tokio::sync::OnceCell;

use crate::error::{Error, Result};

use super::*;

/// One SDK client (one connection pool) for a set of settings; replicas of
/// many databases in the same bucket share it.
#[derive(Debug)]
pub struct S3Connection {
    settings: S3Settings,
    /// Shared by connections derived for other prefixes.
    client: Arc<OnceCell<aws_sdk_s3::Client>>,
}

impl S3Connection {
    /// A connection, opened on first use.
    pub fn new(settings: S3Settings) -> Result<Arc<S3Connection>> {
        settings.validate()?;
        Ok(Arc::new(S3Connection {
            settings,
            client: Arc::new(OnceCell::new()),
        }))
    }

    /// A connection for other settings (another bucket or prefix) on the
    /// same SDK client and connection pool. The settings must have the same
    /// [`connection_key`](S3Settings::connection_key).
    pub fn derive(&self, settings: S3Settings) -> Result<Arc<S3Connection>> {
        settings.validate()?;
        if settings.connection_key() != self.settings.connection_key() {
            return Err(Error::InvalidInput(format!(
                "{}: cannot share a connection made for other endpoint, region or credentials",
                settings.location()
            )));
        }
        Ok(Arc::new(S3Connection {
            settings,
            client: self.client.clone(),
        }))
    }

    /// True if both use the same SDK client.
    pub fn shares_client_with(&self, other: &S3Connection) -> bool {
        Arc::ptr_eq(&self.client, &other.client)
    }

    /// The settings.
    pub fn settings(&self) -> &S3Settings {
        &self.settings
    }

    /// The SDK client.
    pub async fn client(&self) -> Result<&aws_sdk_s3::Client> {
        self.client
            .get_or_try_init(|| build_client(&self.settings))
            .await
    }
}

/// Trust store: the platform's roots plus `AWS_CA_BUNDLE` when it names a
/// PEM file (as the other AWS SDKs honour it).
fn http_client() -> Result<aws_sdk_s3::config::SharedHttpClient> {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
    let mut trust = TrustStore::default();
    if let Ok(path) = std::env::var("AWS_CA_BUNDLE")
        && !path.is_empty()
    {
        let pem =
            std::fs::read(&path).map_err(|e| Error::io(format!("read AWS_CA_BUNDLE {path}"), e))?;
        trust = trust.with_pem_certificate(pem);
    }
    let ctx = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| Error::InvalidInput(format!("TLS settings: {e}")))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(ctx)
        .build_https())
}

async fn build_client(s: &S3Settings) -> Result<aws_sdk_s3::Client> {
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http_client()?);
    let region = s
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
        .or_else(|| {
            std::env::var("AWS_DEFAULT_REGION")
                .ok()
                .filter(|r| !r.is_empty())
        });
    // A custom endpoint needs some region to sign with; AWS itself gets the
    // profile's or us-east-1.
    loader = loader.region(Region::new(
        region.unwrap_or_else(|| "us-east-1".to_string()),
    ));
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let static_keys = match (&s.access_key_id, &s.secret_access_key) {
        (Some(a), Some(b)) => Some((a.clone(), b.clone())),
        _ => match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(a), Some(b)) => Some((a, b)),
            _ => match (
                env("LITESTREAM_ACCESS_KEY_ID"),
                env("LITESTREAM_SECRET_ACCESS_KEY"),
            ) {
                (Some(a), Some(b)) => Some((a, b)),
                _ => None,
            },
        },
    };
    if let Some((a, b)) = static_keys {
        let session = env("AWS_SESSION_TOKEN");
        loader = loader.credentials_provider(Credentials::new(a, b, session, None, "litestreampp"));
    }
    if let Some(e) = &s.endpoint {
        loader = loader.endpoint_url(e);
    }
    let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .build();
    loader = loader
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .timeout_config(timeouts);
    let sdk = loader.load().await;
    let mut b = aws_sdk_s3::config::Builder::from(&sdk)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    let path_style = s.force_path_style.unwrap_or(s.endpoint.is_some());
    b = b.force_path_style(path_style);
    Ok(aws_sdk_s3::Client::from_conf(b.build()))
}
