//! Writing to S3: one PutObject for small files, multipart uploads (parts
//! read from the file or buffer and checksummed) for large ones, and
//! batched deletes.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};

use super::super::LtxBody;
use crate::error::{Error, Result};

use super::errors::{backend, map_err};
use super::sdk::S3ReplicaClient;
use super::*;

impl S3ReplicaClient {
    pub(super) fn md5_header(&self, data: &[u8]) -> Option<String> {
        self.settings()
            .require_content_md5
            .unwrap_or(true)
            .then(|| base64::engine::general_purpose::STANDARD.encode(Md5::digest(data)))
    }

    pub(super) async fn put_small(&self, key: &str, data: bytes::Bytes, ts: &str) -> Result<()> {
        let client = self.conn.client().await?;
        let s = self.settings();
        let mut req = client
            .put_object()
            .bucket(&s.bucket)
            .key(key)
            .metadata(METADATA_TIMESTAMP, ts)
            .content_length(data.len() as i64);
        if let Some(m) = self.md5_header(&data) {
            req = req.content_md5(m);
        }
        if let Some(c) = &s.storage_class {
            req = req.storage_class(c.as_str().into());
        }
        if let Some(k) = &self.sse_key {
            req = req
                .sse_customer_algorithm("AES256")
                .sse_customer_key(&k.key_b64)
                .sse_customer_key_md5(&k.md5_b64);
        }
        if let Some(id) = &s.sse_kms_key_id {
            req = req
                .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                .ssekms_key_id(id);
        }
        let req = req.body(ByteStream::from(data));
        let r = if s.sign_payload == Some(false) {
            req.customize().disable_payload_signing().send().await
        } else {
            req.send().await
        };
        r.map_err(|e| map_err(e, &format!("put {}", self.describe(key))))?;
        Ok(())
    }

    pub(super) async fn put_multipart(
        &self,
        key: &str,
        body: &LtxBody,
        size: u64,
        ts: &str,
    ) -> Result<()> {
        let client = self.conn.client().await?;
        let s = self.settings();
        let what = self.describe(key);
        let mut req = client
            .create_multipart_upload()
            .bucket(&s.bucket)
            .key(key)
            .metadata(METADATA_TIMESTAMP, ts);
        if let Some(c) = &s.storage_class {
            req = req.storage_class(c.as_str().into());
        }
        if let Some(k) = &self.sse_key {
            req = req
                .sse_customer_algorithm("AES256")
                .sse_customer_key(&k.key_b64)
                .sse_customer_key_md5(&k.md5_b64);
        }
        if let Some(id) = &s.sse_kms_key_id {
            req = req
                .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                .ssekms_key_id(id);
        }
        let created = req
            .send()
            .await
            .map_err(|e| map_err(e, &format!("start multipart upload {what}")))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| backend(&what, "multipart upload without an upload ID", false))?
            .to_string();
        let part_size = s.part_size();
        let parts = size.div_ceil(part_size);
        let result: Result<Vec<CompletedPart>> = futures::stream::iter(0..parts)
            .map(|i| {
                let upload_id = upload_id.clone();
                let what = what.clone();
                async move {
                    let off = i * part_size;
                    let len = part_size.min(size - off);
                    let data = body.read_at(off, len).await?;
                    let mut req = client
                        .upload_part()
                        .bucket(&s.bucket)
                        .key(key)
                        .upload_id(&upload_id)
                        .part_number((i + 1) as i32)
                        .content_length(len as i64);
                    if let Some(m) = self.md5_header(&data) {
                        req = req.content_md5(m);
                    }
                    if let Some(k) = &self.sse_key {
                        req = req
                            .sse_customer_algorithm("AES256")
                            .sse_customer_key(&k.key_b64)
                            .sse_customer_key_md5(&k.md5_b64);
                    }
                    let req = req.body(ByteStream::from(data));
                    let out = if s.sign_payload == Some(false) {
                        req.customize().disable_payload_signing().send().await
                    } else {
                        req.send().await
                    }
                    .map_err(|e| map_err(e, &format!("upload part {} of {what}", i + 1)))?;
                    Ok(CompletedPart::builder()
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .part_number((i + 1) as i32)
                        .build())
                }
            })
            .buffer_unordered(s.concurrency())
            .try_collect()
            .await;
        let mut done = match result {
            Ok(p) => p,
            Err(e) => {
                // Leave no orphan parts; the upload error is what we report.
                let _ = client
                    .abort_multipart_upload()
                    .bucket(&s.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                return Err(e);
            }
        };
        done.sort_by_key(|p| p.part_number());
        let r = client
            .complete_multipart_upload()
            .bucket(&s.bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .await;
        if let Err(e) = r {
            let _ = client
                .abort_multipart_upload()
                .bucket(&s.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            return Err(map_err(e, &format!("complete multipart upload {what}")));
        }
        Ok(())
    }

    /// Deletes keys in batches of 1,000 (DeleteObjects), checking each
    /// key's result.
    pub(super) async fn delete_keys(&self, keys: Vec<String>) -> Result<()> {
        let client = self.conn.client().await?;
        let s = self.settings();
        let want_md5 = s.require_content_md5.unwrap_or(true);
        for batch in keys.chunks(MAX_KEYS) {
            let objects: Vec<ObjectIdentifier> = batch
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| Error::InvalidInput(format!("delete: {e}")))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| Error::InvalidInput(format!("delete: {e}")))?;
            let mut req = client
                .delete_objects()
                .bucket(&s.bucket)
                .delete(delete)
                .customize();
            if want_md5 {
                // Some S3-compatible services insist on Content-MD5 here.
                req = req.mutate_request(|r| {
                    if let Some(body) = r.body().bytes() {
                        let m = base64::engine::general_purpose::STANDARD.encode(Md5::digest(body));
                        r.headers_mut().insert("Content-MD5", m);
                    }
                });
            }
            let out = req.send().await.map_err(|e| {
                map_err(
                    e,
                    &format!("delete {} objects in s3://{}", batch.len(), s.bucket),
                )
            })?;
            if let Some(err) = out.errors().first() {
                return Err(backend(
                    &format!("s3://{}/{}", s.bucket, err.key().unwrap_or("?")),
                    &format!(
                        "delete failed: {} {}",
                        err.code().unwrap_or(""),
                        err.message().unwrap_or("")
                    ),
                    false,
                ));
            }
        }
        Ok(())
    }
}
