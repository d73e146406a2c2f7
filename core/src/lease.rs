//! Ownership leases on S3 conditional writes. A lease is one small JSON
//! object: `If-None-Match: *` creates it (acquire), `If-Match: <etag>`
//! replaces it (renew, or take over one whose time ran out), and a
//! conditional delete removes it (release). S3 decides races: of two
//! holders writing at once exactly one write succeeds, so no coordinator of
//! our own is needed.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};

use crate::client::s3::{S3Connection, map_err};
use crate::error::{Error, Result};

/// The lease object's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub holder: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// A lease this process holds.
#[derive(Debug)]
pub struct Lease {
    conn: Arc<S3Connection>,
    key: String,
    holder: String,
    ttl: Duration,
    etag: String,
    expires_at: jiff::Timestamp,
}

fn record(holder: &str, ttl: Duration) -> Result<(Vec<u8>, jiff::Timestamp)> {
    let expires = jiff::Timestamp::now()
        .checked_add(
            jiff::SignedDuration::try_from(ttl)
                .map_err(|e| Error::InvalidInput(format!("lease TTL: {e}")))?,
        )
        .map_err(|e| Error::InvalidInput(format!("lease TTL: {e}")))?;
    let r = LeaseRecord {
        holder: holder.to_string(),
        expires_at: expires.to_string(),
    };
    let body =
        serde_json::to_vec(&r).map_err(|e| Error::InvalidInput(format!("lease record: {e}")))?;
    Ok((body, expires))
}

impl Lease {
    /// Takes the lease at `key` for `ttl`: creates it if absent, or takes it
    /// over if its holder let it expire. Otherwise fails with
    /// [`Error::HeldByAnother`].
    pub async fn acquire(
        conn: &Arc<S3Connection>,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease> {
        let what = format!("lease s3://{}/{key}", conn.settings().bucket);
        let client = conn.client().await?;
        let (body, expires) = record(holder, ttl)?;
        let created = client
            .put_object()
            .bucket(&conn.settings().bucket)
            .key(key)
            .if_none_match("*")
            .body(ByteStream::from(body.clone()))
            .send()
            .await;
        let etag = match created {
            Ok(out) => out.e_tag().unwrap_or_default().to_string(),
            Err(e) => match map_err(e, &what) {
                Error::PreconditionFailed { .. } => {
                    // Someone holds it: take it over only if it expired.
                    let (current, etag) =
                        Self::current(conn, key)
                            .await?
                            .ok_or_else(|| Error::HeldByAnother {
                                what: what.clone(),
                                holder: "?".into(),
                                until: "?".into(),
                            })?;
                    let until: jiff::Timestamp =
                        current.expires_at.parse().unwrap_or(jiff::Timestamp::MAX);
                    if until > jiff::Timestamp::now() {
                        return Err(Error::HeldByAnother {
                            what,
                            holder: current.holder,
                            until: current.expires_at,
                        });
                    }
                    let out = client
                        .put_object()
                        .bucket(&conn.settings().bucket)
                        .key(key)
                        .if_match(&etag)
                        .body(ByteStream::from(body))
                        .send()
                        .await
                        .map_err(|e| match map_err(e, &what) {
                            Error::PreconditionFailed { .. } => Error::HeldByAnother {
                                what: what.clone(),
                                holder: "another holder (it took over first)".into(),
                                until: "?".into(),
                            },
                            other => other,
                        })?;
                    out.e_tag().unwrap_or_default().to_string()
                }
                other => return Err(other),
            },
        };
        Ok(Lease {
            conn: conn.clone(),
            key: key.to_string(),
            holder: holder.to_string(),
            ttl,
            etag,
            expires_at: expires,
        })
    }

    /// The lease at `key` and its ETag, if any.
    pub async fn current(
        conn: &Arc<S3Connection>,
        key: &str,
    ) -> Result<Option<(LeaseRecord, String)>> {
        let what = format!("lease s3://{}/{key}", conn.settings().bucket);
        let client = conn.client().await?;
        let out = match client
            .get_object()
            .bucket(&conn.settings().bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) => {
                return match map_err(e, &what) {
                    Error::NotFound { .. } => Ok(None),
                    other => Err(other),
                };
            }
        };
        let etag = out.e_tag().unwrap_or_default().to_string();
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| Error::Backend {
                context: what.clone(),
                message: format!("read body: {e}"),
                transient: true,
            })?
            .into_bytes();
        let rec: LeaseRecord = serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt(what, format!("not a lease record: {e}")))?;
        Ok(Some((rec, etag)))
    }

    /// Extends the lease by its TTL. Fails with [`Error::HeldByAnother`] if
    /// it was taken over meanwhile.
    pub async fn renew(&mut self) -> Result<()> {
        let what = format!("lease s3://{}/{}", self.conn.settings().bucket, self.key);
        let client = self.conn.client().await?;
        let (body, expires) = record(&self.holder, self.ttl)?;
        let out = client
            .put_object()
            .bucket(&self.conn.settings().bucket)
            .key(&self.key)
            .if_match(&self.etag)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| match map_err(e, &what) {
                Error::PreconditionFailed { .. } | Error::NotFound { .. } => Error::HeldByAnother {
                    what: what.clone(),
                    holder: "another holder".into(),
                    until: "?".into(),
                },
                other => other,
            })?;
        self.etag = out.e_tag().unwrap_or_default().to_string();
        self.expires_at = expires;
        Ok(())
    }

    /// Gives the lease up (conditional delete: only while still ours).
    pub async fn release(self) -> Result<()> {
        let what = format!("lease s3://{}/{}", self.conn.settings().bucket, self.key);
        let client = self.conn.client().await?;
        client
            .delete_object()
            .bucket(&self.conn.settings().bucket)
            .key(&self.key)
            .if_match(&self.etag)
            .send()
            .await
            .map_err(|e| match map_err(e, &what) {
                Error::PreconditionFailed { .. } | Error::NotFound { .. } => Error::HeldByAnother {
                    what: what.clone(),
                    holder: "another holder".into(),
                    until: "?".into(),
                },
                other => other,
            })?;
        Ok(())
    }

    /// When the lease runs out unless renewed.
    pub fn expires_at(&self) -> jiff::Timestamp {
        self.expires_at
    }

    /// The holder name.
    pub fn holder(&self) -> &str {
        &self.holder
    }
}
