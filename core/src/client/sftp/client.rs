//! The SFTP client on russh and russh-sftp: one SSH connection per server,
//! user and credentials ([`Connection`], shared by a
//! [`super::super::ClientPool`]), opened at the first request and opened
//! again after it breaks, so that a replica costs nothing until it is used.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::{Config, RawSftpSession, SftpSession};
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::SftpSettings;
use crate::client::{ByteReader, FileInfo, FileStream, LtxBody, RawEntry, ReplicaClient};
use crate::error::{Error, Result};
use crate::redact::redact_text;
use crate::txid::{TxId, ltx_file_name, parse_ltx_file_name};

/// How long dialling, the handshake and authentication may take (Go's
/// `DefaultDialTimeout`).
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one SFTP request may wait for its answer: the idle bound of
/// the other backends' requests.
const REQUEST_TIMEOUT_SECS: u64 = 30;
/// Writes of one upload in flight with `concurrent-writes` (each up to
/// russh-sftp's 32 KiB preferred packet).
const WRITES_IN_FLIGHT: usize = 16;
/// The OpenSSH extension that renames over an existing file.
const POSIX_RENAME: &str = "posix-rename@openssh.com";

/// An open SSH connection with its SFTP channels.
struct Session {
    ssh: russh::client::Handle<HostCheck>,
    /// Files, directories and listings.
    files: SftpSession,
    /// A second channel for the requests `SftpSession` does not offer
    /// (`posix-rename@openssh.com`).
    raw: RawSftpSession,
    posix_rename: bool,
}

/// One server as one user with one set of credentials, connected at the
/// first request of any replica that shares it.
#[derive(Clone, Default)]
pub(crate) struct Connection(Arc<tokio::sync::Mutex<Option<Arc<Session>>>>);

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

impl Connection {
    /// The open session, connecting if there is none or it has closed.
    async fn session(&self, s: &SftpSettings) -> Result<Arc<Session>> {
        let mut current = self.0.lock().await;
        if let Some(open) = current.as_ref()
            && !open.ssh.is_closed()
        {
            return Ok(open.clone());
        }
        let open = Arc::new(
            tokio::time::timeout(DIAL_TIMEOUT, connect(s))
                .await
                .map_err(|_| Error::Backend {
                    context: format!("connect to {}", s.location()),
                    message: format!("no answer in {DIAL_TIMEOUT:?}"),
                    transient: true,
                })??,
        );
        *current = Some(open.clone());
        Ok(open)
    }

    /// Forgets `broken`, so that the next request connects again.
    async fn reset(&self, broken: &Arc<Session>) {
        let mut current = self.0.lock().await;
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, broken)) {
            *current = None;
        }
    }
}

/// Checks the server's key against `host-key`, or accepts it with a
/// warning when none is configured (Go's behaviour).
struct HostCheck {
    expected: Option<PublicKey>,
    location: String,
    /// Set when the server offered another key, for the error message.
    mismatch: Arc<Mutex<Option<String>>>,
}

impl russh::client::Handler for HostCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = offered else {
            *self
                .mismatch
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some("the server offered a certificate, not a host key".into());
            return Ok(false);
        };
        let Some(expected) = &self.expected else {
            tracing::warn!(
                replica = %self.location,
                fingerprint = %key.fingerprint(Default::default()),
                "sftp host key not verified (set host-key to verify it)"
            );
            return Ok(true);
        };
        if key.key_data() == expected.key_data() {
            return Ok(true);
        }
        *self
            .mismatch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(format!(
            "the server's host key {} is not the configured host-key {}",
            key.fingerprint(Default::default()),
            expected.fingerprint(Default::default())
        ));
        Ok(false)
    }
}

/// Dials, checks the host key, authenticates (password, then key, as Go
/// offers them) and opens the SFTP channels.
async fn connect(s: &SftpSettings) -> Result<Session> {
    let loc = s.location();
    let expected = match &s.host_key {
        Some(line) => Some(parse_host_key(line).map_err(|why| {
            Error::InvalidInput(format!("{loc}: cannot parse sftp host-key: {why}"))
        })?),
        None => None,
    };
    let key = match &s.key_path {
        Some(p) => Some(russh::keys::load_secret_key(p, None).map_err(|e| {
            Error::InvalidInput(format!(
                "{loc}: cannot read sftp key-path {}: {}",
                p.display(),
                redact_text(&e.to_string())
            ))
        })?),
        None => None,
    };
    let mismatch = Arc::new(Mutex::new(None));
    let check = HostCheck {
        expected,
        location: loc.clone(),
        mismatch: mismatch.clone(),
    };
    let config = Arc::new(russh::client::Config {
        keepalive_interval: Some(Duration::from_secs(30)),
        ..Default::default()
    });
    let mut ssh = russh::client::connect(config, s.address(), check)
        .await
        .map_err(|e| {
            let refused = mismatch
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            match refused {
                Some(why) => Error::Backend {
                    context: format!("connect to {loc}"),
                    message: why,
                    transient: false,
                },
                None => Error::Backend {
                    context: format!("connect to {loc}"),
                    message: redact_text(&e.to_string()),
                    transient: true,
                },
            }
        })?;
    let link_failed = |e: russh::Error| Error::Backend {
        context: format!("connect to {loc}"),
        message: redact_text(&e.to_string()),
        transient: true,
    };
    let mut authenticated = false;
    if let Some(pw) = &s.password {
        authenticated = ssh
            .authenticate_password(&s.user, pw.expose())
            .await
            .map_err(link_failed)?
            .success();
    }
    if let (false, Some(key)) = (authenticated, key) {
        let hash = ssh
            .best_supported_rsa_hash()
            .await
            .map_err(link_failed)?
            .flatten();
        authenticated = ssh
            .authenticate_publickey(&s.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(link_failed)?
            .success();
    }
    if !authenticated {
        let tried = match (&s.password, &s.key_path) {
            (Some(_), Some(_)) => "password and key-path",
            (Some(_), None) => "password",
            _ => "key-path",
        };
        return Err(Error::Backend {
            context: format!("connect to {loc}"),
            message: format!("the server refused user {:?} ({tried})", s.user),
            transient: false,
        });
    }
    let sftp_failed = |e: SftpError| Error::Backend {
        context: format!("start sftp on {loc}"),
        message: redact_text(&e.to_string()),
        transient: true,
    };
    let config = Config {
        max_concurrent_writes: if s.concurrent_writes {
            WRITES_IN_FLIGHT
        } else {
            1
        },
        request_timeout_secs: REQUEST_TIMEOUT_SECS,
        ..Config::default()
    };
    let files = SftpSession::new_with_config(sftp_channel(&ssh, &loc).await?, config.clone())
        .await
        .map_err(sftp_failed)?;
    let raw = RawSftpSession::new_with_config(sftp_channel(&ssh, &loc).await?, config);
    let version = raw.init().await.map_err(sftp_failed)?;
    let posix_rename = version.extensions.contains_key(POSIX_RENAME);
    Ok(Session {
        ssh,
        files,
        raw,
        posix_rename,
    })
}

/// A session channel running the `sftp` subsystem.
async fn sftp_channel(
    ssh: &russh::client::Handle<HostCheck>,
    loc: &str,
) -> Result<russh::ChannelStream<russh::client::Msg>> {
    let ch = ssh
        .channel_open_session()
        .await
        .map_err(|e| Error::Backend {
            context: format!("open an sftp channel to {loc}"),
            message: redact_text(&e.to_string()),
            transient: true,
        })?;
    ch.request_subsystem(true, "sftp")
        .await
        .map_err(|e| Error::Backend {
            context: format!("start sftp on {loc}"),
            message: redact_text(&e.to_string()),
            transient: false,
        })?;
    Ok(ch.into_stream())
}

/// A key in `authorized_keys` form (`ssh-ed25519 AAAA… comment`), as Go's
/// `ssh.ParseAuthorizedKey` reads `host-key`.
fn parse_host_key(line: &str) -> std::result::Result<PublicKey, String> {
    let mut words = line.split_whitespace();
    let (Some(_algorithm), Some(base64)) = (words.next(), words.next()) else {
        return Err("expected \"<type> <base64 key>\", as in authorized_keys".into());
    };
    russh::keys::parse_public_key_base64(base64).map_err(|e| e.to_string())
}

/// An SSH string (length, then bytes), for extension requests.
fn ssh_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// How a failed request is reported and whether the connection is kept.
fn is_missing(e: &SftpError) -> bool {
    matches!(e, SftpError::Status(s) if s.status_code == StatusCode::NoSuchFile)
}

/// One replica: a directory on a server.
#[derive(Clone)]
pub(crate) struct SftpReplicaClient {
    settings: Arc<SftpSettings>,
    connection: Connection,
    /// Directories made or seen by this client, so an upload does not ask
    /// for its level's directory every time.
    dirs: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for SftpReplicaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpReplicaClient")
            .field("location", &self.settings.location())
            .finish_non_exhaustive()
    }
}

impl SftpReplicaClient {
    pub(crate) fn new(settings: SftpSettings, connection: Connection) -> Result<Self> {
        settings.validate()?;
        Ok(SftpReplicaClient {
            settings: Arc::new(settings),
            connection,
            dirs: Arc::default(),
        })
    }

    /// `rel` under the replica's directory (Go's `path.Join`).
    fn join(&self, rel: &str) -> String {
        match self.settings.path.trim_end_matches('/') {
            "" if self.settings.path.starts_with('/') => format!("/{rel}"),
            "" | "." => rel.to_string(),
            root => format!("{root}/{rel}"),
        }
    }

    fn level_dir(&self, level: u32) -> String {
        self.join(&format!("ltx/{level}"))
    }

    fn file_path(&self, level: u32, min: TxId, max: TxId) -> String {
        format!("{}/{}", self.level_dir(level), ltx_file_name(min, max))
    }

    fn describe(&self, path: &str) -> String {
        format!("{} {path}", self.settings.location())
    }

    /// The session, and an error mapper that forgets it when the failure
    /// is the connection's rather than the request's.
    async fn session(&self) -> Result<Arc<Session>> {
        self.connection.session(&self.settings).await
    }

    async fn failed(&self, session: &Arc<Session>, op: &str, path: &str, e: SftpError) -> Error {
        let (transient, message) = match &e {
            SftpError::Status(s) => (
                !matches!(
                    s.status_code,
                    StatusCode::PermissionDenied | StatusCode::OpUnsupported
                ),
                format!("{}: {}", s.status_code, s.error_message),
            ),
            _ => {
                // A timeout or a closed channel: the link is suspect.
                self.connection.reset(session).await;
                (true, e.to_string())
            }
        };
        if is_missing(&e) {
            return Error::NotFound {
                what: self.describe(path),
            };
        }
        Error::Backend {
            context: format!("{op} {}", self.describe(path)),
            message: redact_text(&message),
            transient,
        }
    }

    /// A directory's entries (name, is_dir, size, mtime); a missing
    /// directory lists as empty.
    async fn entries(&self, dir: &str) -> Result<Vec<RawEntry>> {
        let session = self.session().await?;
        let listed = match session.files.read_dir(dir).await {
            Ok(l) => l,
            Err(e) if is_missing(&e) => return Ok(Vec::new()),
            Err(e) => return Err(self.failed(&session, "list", dir, e).await),
        };
        let mut out: Vec<RawEntry> = listed
            .filter(|e| e.file_name() != "." && e.file_name() != "..")
            .map(|e| {
                let m = e.metadata();
                RawEntry {
                    name: e.file_name(),
                    is_dir: m.is_dir(),
                    size: m.size.unwrap_or(0),
                    modified: jiff::Timestamp::from_second(i64::from(m.mtime.unwrap_or(0)))
                        .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Makes `dir` and its parents (Go's `MkdirAll`).
    async fn make_dirs(&self, session: &Arc<Session>, dir: &str) -> Result<()> {
        let known = |d: &str| {
            self.dirs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(d)
        };
        if known(dir) {
            return Ok(());
        }
        // Up to the first directory that exists, then down again.
        let mut missing = Vec::new();
        let mut at = dir.to_string();
        loop {
            match session.files.metadata(at.clone()).await {
                Ok(m) if m.is_dir() => break,
                Ok(_) => {
                    return Err(Error::Backend {
                        context: format!("mkdir {}", self.describe(dir)),
                        message: format!("{at} exists and is not a directory"),
                        transient: false,
                    });
                }
                Err(e) if is_missing(&e) => missing.push(at.clone()),
                Err(e) => return Err(self.failed(session, "stat", &at, e).await),
            }
            match at.rsplit_once('/') {
                Some(("", _)) | None => break,
                Some((parent, _)) => at = parent.to_string(),
            }
        }
        for d in missing.iter().rev() {
            if let Err(e) = session.files.create_dir(d.clone()).await {
                // Made meanwhile by another upload: fine.
                match session.files.metadata(d.clone()).await {
                    Ok(m) if m.is_dir() => {}
                    _ => return Err(self.failed(session, "mkdir", d, e).await),
                }
            }
        }
        self.dirs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(dir.to_string());
        Ok(())
    }

    /// Writes `body` to `tmp`, flushed to the server's disk and closed.
    async fn upload(&self, session: &Arc<Session>, tmp: &str, body: &LtxBody) -> Result<()> {
        let mut remote = match session
            .files
            .open_with_flags(
                tmp.to_string(),
                OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
            )
            .await
        {
            Ok(f) => f,
            Err(e) => return Err(self.failed(session, "create", tmp, e).await),
        };
        let sent = match body {
            LtxBody::Bytes(b) => remote.write_all(b).await,
            LtxBody::File(p) => {
                let f = tokio::fs::File::open(p)
                    .await
                    .map_err(|e| Error::io(format!("open {}", p.display()), e))?;
                let mut local = tokio::io::BufReader::with_capacity(256 * 1024, f);
                tokio::io::copy_buf(&mut local, &mut remote).await.map(drop)
            }
        };
        // flush: every write acknowledged, then fsync@openssh.com where
        // the server offers it; shutdown: the handle closed.
        let done = match sent {
            Ok(()) => match remote.flush().await {
                Ok(()) => remote.shutdown().await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match done {
            Ok(()) => Ok(()),
            Err(e) => Err(self.failed(session, "put", tmp, SftpError::from(e)).await),
        }
    }

    /// Renames `from` over `to`, replacing it if it exists.
    async fn rename(&self, session: &Arc<Session>, from: &str, to: &str) -> Result<()> {
        let renamed = if session.posix_rename {
            let mut data = Vec::new();
            ssh_string(&mut data, from);
            ssh_string(&mut data, to);
            match session.raw.extended(POSIX_RENAME, data).await {
                Ok(Packet::Status(s)) if s.status_code == StatusCode::Ok => Ok(()),
                Ok(Packet::Status(s)) => Err(SftpError::Status(s)),
                Ok(_) => Err(SftpError::UnexpectedPacket),
                Err(e) => Err(e),
            }
        } else {
            // SFTP's own rename does not replace: a retried upload removes
            // the earlier copy (the same TXID range) first.
            match session.files.rename(from, to).await {
                Ok(()) => Ok(()),
                Err(first) => match session.files.metadata(to.to_string()).await {
                    Ok(_) => match session.files.remove_file(to.to_string()).await {
                        Ok(()) => session.files.rename(from, to).await,
                        Err(e) => Err(e),
                    },
                    Err(_) => Err(first),
                },
            }
        };
        match renamed {
            Ok(()) => Ok(()),
            Err(e) => Err(self.failed(session, "rename", from, e).await),
        }
    }

    /// Reads the 100-byte LTX header of `path` for its exact timestamp.
    async fn header_time(&self, path: &str) -> Result<Option<jiff::Timestamp>> {
        let mut r = self.open(path, 0, crate::ltx::HEADER_SIZE as u64).await?;
        let mut head = Vec::with_capacity(crate::ltx::HEADER_SIZE);
        r.read_to_end(&mut head)
            .await
            .map_err(|e| Error::io(format!("read {}", self.describe(path)), e))?;
        let header = crate::ltx::Header::decode(&head, &self.describe(path))?;
        Ok(jiff::Timestamp::from_millisecond(header.timestamp_ms).ok())
    }

    async fn open(&self, path: &str, offset: u64, size: u64) -> Result<ByteReader> {
        let session = self.session().await?;
        let mut f = match session.files.open(path.to_string()).await {
            Ok(f) => f,
            Err(e) => return Err(self.failed(&session, "get", path, e).await),
        };
        if offset > 0
            && let Err(e) = f.seek(std::io::SeekFrom::Start(offset)).await
        {
            return Err(self.failed(&session, "get", path, e.into()).await);
        }
        Ok(if size > 0 {
            Box::pin(f.take(size))
        } else {
            Box::pin(f)
        })
    }

    async fn remove(&self, session: &Arc<Session>, path: &str) -> Result<()> {
        match session.files.remove_file(path.to_string()).await {
            Ok(()) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(self.failed(session, "delete", path, e).await),
        }
    }

    /// Every file under `dir`, named relative to the replica's directory,
    /// and every directory under it, deepest last.
    async fn walk(&self, dir: &str) -> Result<(Vec<RawEntry>, Vec<String>)> {
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        let mut pending = vec![dir.to_string()];
        while let Some(d) = pending.pop() {
            for e in self.entries(&self.join(&d)).await? {
                let rel = if d.is_empty() {
                    e.name.clone()
                } else {
                    format!("{d}/{}", e.name)
                };
                if e.is_dir {
                    dirs.push(rel.clone());
                    pending.push(rel);
                } else {
                    files.push(RawEntry { name: rel, ..e });
                }
            }
        }
        dirs.sort_by_key(|d| d.matches('/').count());
        Ok((files, dirs))
    }
}

#[async_trait]
impl ReplicaClient for SftpReplicaClient {
    fn kind(&self) -> &'static str {
        "sftp"
    }

    fn location(&self) -> String {
        self.settings.location()
    }

    fn files_per_delete(&self) -> usize {
        // One request per file, and a file already gone counts as removed,
        // so a batch retried after a failure redoes only what is left.
        64
    }

    async fn ltx_files(&self, level: u32, seek: TxId, use_metadata: bool) -> Result<FileStream> {
        let mut files: Vec<FileInfo> = self
            .entries(&self.level_dir(level))
            .await?
            .into_iter()
            .filter(|e| !e.is_dir)
            .filter_map(|e| {
                let (min, max) = parse_ltx_file_name(&e.name)?;
                Some(FileInfo {
                    level,
                    min_txid: min,
                    max_txid: max,
                    size: e.size,
                    created_at: e.modified,
                })
            })
            .filter(|f| f.min_txid >= seek)
            .collect();
        files.sort_by_key(|f| (f.min_txid, f.max_txid));
        let listing = futures::stream::iter(files.into_iter().map(Ok));
        if !use_metadata {
            return Ok(Box::pin(listing));
        }
        // The modification time keeps whole seconds: the header has the
        // millisecond.
        let me = self.clone();
        Ok(crate::client::with_exact_times(
            Box::pin(listing),
            move |f| {
                let me = me.clone();
                let path = me.file_path(f.level, f.min_txid, f.max_txid);
                async move { me.header_time(&path).await }
            },
        ))
    }

    async fn open_ltx_file(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        offset: u64,
        size: u64,
    ) -> Result<ByteReader> {
        self.open(&self.file_path(level, min, max), offset, size)
            .await
    }

    async fn write_ltx_file(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        body: LtxBody,
    ) -> Result<FileInfo> {
        let path = self.file_path(level, min, max);
        let (info, _) = body.upload_info(level, min, max, &self.describe(&path))?;
        let session = self.session().await?;
        self.make_dirs(&session, &self.level_dir(level)).await?;
        let tmp = format!(
            "{path}.{}.{}.tmp",
            std::process::id(),
            jiff::Timestamp::now().as_nanosecond()
        );
        let written = async {
            self.upload(&session, &tmp, &body).await?;
            let secs = u32::try_from(info.created_at.as_second()).unwrap_or(0);
            let times = FileAttributes {
                atime: Some(secs),
                mtime: Some(secs),
                ..FileAttributes::empty()
            };
            if let Err(e) = session.files.set_metadata(tmp.clone(), times).await {
                return Err(self.failed(&session, "set the time of", &tmp, e).await);
            }
            self.rename(&session, &tmp, &path).await
        }
        .await;
        if let Err(e) = written {
            // Best effort: the temporary name is never listed as a file.
            let _ = session.files.remove_file(tmp).await;
            if e.is_not_found() {
                // The level's directory went away (a delete_all elsewhere).
                self.dirs
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clear();
            }
            return Err(e);
        }
        Ok(info)
    }

    async fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        let session = self.session().await?;
        for f in files {
            self.remove(&session, &self.file_path(f.level, f.min_txid, f.max_txid))
                .await?;
        }
        Ok(())
    }

    async fn delete_all(&self) -> Result<()> {
        let (files, dirs) = self.walk("ltx").await?;
        let session = self.session().await?;
        // `walk` names entries from the replica's directory (`ltx/0/…`).
        for f in &files {
            self.remove(&session, &self.join(&f.name)).await?;
        }
        let mut dirs = dirs;
        dirs.insert(0, "ltx".into());
        self.dirs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        for d in dirs.iter().rev() {
            let path = self.join(d);
            match session.files.remove_dir(path.clone()).await {
                Ok(()) => {}
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(self.failed(&session, "rmdir", &path, e).await),
            }
        }
        // The replica's own directory goes too when nothing else is in it
        // (Go: Cleanup).
        if !matches!(self.settings.path.trim_matches('/'), "" | ".") {
            let _ = session
                .files
                .remove_dir(self.join("").trim_end_matches('/'))
                .await;
        }
        Ok(())
    }

    async fn list_raw(&self, dir: &str) -> Result<Vec<RawEntry>> {
        self.entries(&self.join(dir.trim_matches('/'))).await
    }

    async fn list_tree(&self) -> Result<Vec<RawEntry>> {
        Ok(self.walk("").await?.0)
    }

    async fn open_raw(&self, path: &str) -> Result<ByteReader> {
        self.open(&self.join(path.trim_matches('/')), 0, 0).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_as_go_joins_them() {
        let client = |path: &str| {
            SftpReplicaClient::new(
                SftpSettings {
                    host: "h".into(),
                    user: "u".into(),
                    key_path: Some("/k".into()),
                    path: path.into(),
                    ..SftpSettings::default()
                },
                Connection::default(),
            )
            .unwrap()
        };
        assert_eq!(client("/backups/db").level_dir(0), "/backups/db/ltx/0");
        assert_eq!(client("/backups/db/").level_dir(1), "/backups/db/ltx/1");
        assert_eq!(client("/").level_dir(9), "/ltx/9");
        assert_eq!(client("").level_dir(0), "ltx/0");
        assert_eq!(client("rel").level_dir(0), "rel/ltx/0");
        assert_eq!(
            client("/r").file_path(0, TxId(1), TxId(2)),
            "/r/ltx/0/0000000000000001-0000000000000002.ltx"
        );
    }

    #[test]
    fn host_keys_in_authorized_keys_form() {
        let line =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk0oU9CCcQoXBmAm7K4f4aQCzDkDSm8VxNUdlYqXbEz host";
        assert!(parse_host_key(line).is_ok());
        assert!(parse_host_key("ssh-ed25519").is_err());
        assert!(parse_host_key("ssh-ed25519 !!!").is_err());
    }
}
