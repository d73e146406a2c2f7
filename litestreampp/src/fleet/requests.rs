//! Requests to the fleet's loop from outside it (the control socket):
//! "sync this database now", "stop", "start", "register", "unregister".
//! A hot database's replicator is asked at once; a cold, queued or failed
//! one is promoted first, and a sync waits for its replicator to start. A
//! stop or unregister of a hot database is answered once its replicator
//! has made its final sync.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use litestreampp_core::replicator::{FlushHandle, ReplicatorStatus};
use litestreampp_core::txid::TxId;
use tokio::sync::{mpsc, oneshot};

use super::hot_set::Hot;
use super::registry::{Entry, Key, Tier};
use super::status::FleetView;
use super::tiers::Fleet;

/// A running replicator's flush handle and status.
pub(super) type Flushable = (FlushHandle, Arc<Mutex<ReplicatorStatus>>);

/// Why a request was not carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No such database in the fleet.
    NotFound,
    /// The database is stopped (`start` it first).
    Stopped,
    /// The request cannot be carried out as asked (a bad replica URL, a
    /// missing file, a database that is stopping).
    Invalid(String),
    /// The sync failed, or the fleet is stopping.
    Failed(String),
}

/// What a stop, start, register or unregister did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done; the database's local TXID where a replicator reported one.
    Done(TxId),
    /// It was so already.
    Already,
}

pub(super) type Answer = oneshot::Sender<Result<Outcome, Refused>>;

/// What a sync did.
#[derive(Debug, Clone, Copy)]
pub struct Synced {
    /// The local TXID before and after.
    pub before: TxId,
    pub after: TxId,
    /// What the replica holds.
    pub replica: TxId,
}

pub(super) enum Request {
    Flush {
        path: PathBuf,
        reply: oneshot::Sender<Result<Flushable, Refused>>,
    },
    Stop {
        path: PathBuf,
        reply: Answer,
    },
    Start {
        path: PathBuf,
        reply: Answer,
    },
    Register {
        path: PathBuf,
        url: String,
        reply: Answer,
    },
    Unregister {
        path: PathBuf,
        reply: Answer,
    },
}

pub(super) type Requests = mpsc::UnboundedSender<Request>;

/// Requests waiting for their database's replicator to start.
#[derive(Default)]
pub(super) struct FlushWaiters(HashMap<Key, Vec<oneshot::Sender<Result<Flushable, Refused>>>>);

impl FlushWaiters {
    pub fn wait(&mut self, k: &Key, reply: oneshot::Sender<Result<Flushable, Refused>>) {
        self.0.entry(k.clone()).or_default().push(reply);
    }

    pub fn is_waiting(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }

    /// Answers everyone waiting for `k`.
    pub fn answer(&mut self, k: &str, with: impl Fn() -> Result<Flushable, Refused>) {
        for w in self.0.remove(k).unwrap_or_default() {
            let _ = w.send(with()); // the requester may have timed out
        }
    }
}

impl FleetView {
    async fn ask(&self, req: impl FnOnce(Answer) -> Request) -> Result<Outcome, Refused> {
        let stopping = || Refused::Failed("the fleet is stopping".into());
        let (reply, answer) = oneshot::channel();
        self.requests.send(req(reply)).map_err(|_| stopping())?;
        answer.await.map_err(|_| stopping())?
    }

    /// Stops replicating `path` (after a final sync if it is hot) until
    /// [`start_replicating`](Self::start_replicating), across restarts.
    pub async fn stop_replicating(&self, path: &Path) -> Result<Outcome, Refused> {
        let path = path.to_path_buf();
        self.ask(|reply| Request::Stop { path, reply }).await
    }

    /// Resumes a stopped database: it is made hot and synced.
    pub async fn start_replicating(&self, path: &Path) -> Result<Outcome, Refused> {
        let path = path.to_path_buf();
        self.ask(|reply| Request::Start { path, reply }).await
    }

    /// Adds the database at `path`, replicated to `url`.
    pub async fn register(&self, path: &Path, url: &str) -> Result<Outcome, Refused> {
        let (path, url) = (path.to_path_buf(), url.to_string());
        self.ask(|reply| Request::Register { path, url, reply })
            .await
    }

    /// Takes `path` out of the fleet (after a final sync if it is hot);
    /// its files and its replica stay as they are.
    pub async fn unregister(&self, path: &Path) -> Result<Outcome, Refused> {
        let path = path.to_path_buf();
        self.ask(|reply| Request::Unregister { path, reply }).await
    }

    /// Syncs `path` now and returns once the replica holds everything
    /// committed before the call; a cold database is promoted first.
    pub async fn sync_now(&self, path: &Path) -> Result<Synced, Refused> {
        let stopping = || Refused::Failed("the fleet is stopping".into());
        // A replicator that stops between our asking and its sync (an idle
        // demotion) drops the request: ask again.
        let mut last = String::new();
        for _ in 0..3 {
            let (reply, answer) = oneshot::channel();
            self.requests
                .send(Request::Flush {
                    path: path.to_path_buf(),
                    reply,
                })
                .map_err(|_| stopping())?;
            let (flush, status) = answer.await.map_err(|_| stopping())??;
            let local = || status.lock().map(|s| s.local_txid).unwrap_or_default();
            let before = local();
            match flush.flush().await {
                Ok(replica) => {
                    return Ok(Synced {
                        before,
                        after: local(),
                        replica,
                    });
                }
                Err(e) if e.to_string().ends_with("replication stopped") => last = e.to_string(),
                Err(e) => return Err(Refused::Failed(e.to_string())),
            }
        }
        Err(Refused::Failed(last))
    }
}

/// What happens to a database once its replicator has stopped, and who
/// waits for it.
pub(super) struct Pending {
    then: Then,
    replies: Vec<Answer>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    Stop,
    Unregister,
}

impl Fleet {
    /// A request from outside the loop.
    pub(super) fn request(&mut self, req: Request) {
        match req {
            Request::Flush { path, reply } => self.flush(path, reply),
            Request::Stop { path, reply } => self.stop_replicating(&path, reply),
            Request::Start { path, reply } => {
                let r = self.start_replicating(&path);
                self.ack(reply, r);
            }
            Request::Register { path, url, reply } => {
                let r = self.register_db(&path, &url);
                self.ack(reply, r);
            }
            Request::Unregister { path, reply } => self.unregister_db(&path, reply),
        }
    }

    /// `path`'s key, if the fleet has it.
    fn known(&self, path: &Path) -> Option<Key> {
        self.registry
            .key(path)
            .filter(|k| self.registry.entry(k).is_some())
    }

    fn flush(&mut self, path: PathBuf, reply: oneshot::Sender<Result<Flushable, Refused>>) {
        let Some(k) = self.known(&path) else {
            let _ = reply.send(Err(Refused::NotFound));
            return;
        };
        if self
            .registry
            .entry(&k)
            .is_some_and(|e| e.tier == Tier::Stopped)
        {
            let _ = reply.send(Err(Refused::Stopped));
            return;
        }
        if let Some(h) = self.hot.get(&k).filter(|h| !h.is_stopping()) {
            let _ = reply.send(Ok((h.flush.clone(), h.status.clone())));
            return;
        }
        // Answered when its replicator starts: now, once a slot is free,
        // or once a stopping one has finished.
        self.waiters.wait(&k, reply);
        self.promote(&path);
    }

    /// Stops `path`: at once if nothing runs for it, else once its
    /// replicator has made its final sync.
    fn stop_replicating(&mut self, path: &Path, reply: Answer) {
        let Some(k) = self.known(path) else {
            let _ = reply.send(Err(Refused::NotFound));
            return;
        };
        self.after_stop(k, Then::Stop, reply);
    }

    fn unregister_db(&mut self, path: &Path, reply: Answer) {
        let Some(k) = self.known(path) else {
            let _ = reply.send(Ok(Outcome::Already));
            return;
        };
        self.after_stop(k, Then::Unregister, reply);
    }

    fn after_stop(&mut self, k: Key, then: Then, reply: Answer) {
        if then == Then::Stop
            && self
                .registry
                .entry(&k)
                .is_some_and(|e| e.tier == Tier::Stopped)
        {
            let _ = reply.send(Ok(Outcome::Already));
            return;
        }
        match self.hot.get(&k) {
            Some(h) => {
                h.stop();
                let p = self.pending.entry(k).or_insert(Pending {
                    then,
                    replies: Vec::new(),
                });
                // An unregister outranks a stop asked for before it.
                if then == Then::Unregister {
                    p.then = then;
                }
                p.replies.push(reply);
            }
            None => {
                self.carry_out(&k, then);
                self.ack(reply, Ok(Outcome::Done(TxId::ZERO)));
            }
        }
    }

    /// After a replicator with a pending stop or unregister has finished
    /// (and been settled): carries it out and answers.
    pub(super) fn conclude(&mut self, k: &Key, hot: &Hot) {
        let Some(p) = self.pending.remove(k) else {
            return;
        };
        let txid = hot.status.lock().map(|s| s.local_txid).unwrap_or_default();
        self.carry_out(k, p.then);
        for r in p.replies {
            self.ack(r, Ok(Outcome::Done(txid)));
        }
    }

    /// Answers a request; one that changed what the state file records is
    /// answered once the file is written ([`send_acks`](Self::send_acks)),
    /// so a stop that was acknowledged outlasts a crash.
    fn ack(&mut self, reply: Answer, r: Result<Outcome, Refused>) {
        if matches!(r, Ok(Outcome::Done(_))) {
            self.acks.push((reply, r));
        } else {
            let _ = reply.send(r); // the requester may be gone
        }
    }

    /// Writes the state file if requests changed it, then answers them.
    pub(super) async fn send_acks(&mut self) {
        if self.acks.is_empty() {
            return;
        }
        self.save_state().await;
        for (reply, r) in self.acks.drain(..) {
            let _ = reply.send(r); // the requester may be gone
        }
    }

    fn carry_out(&mut self, k: &Key, then: Then) {
        let path = self.registry.path(k);
        self.state_dirty = true;
        match then {
            Then::Stop => {
                self.registry.set_tier(k, Tier::Stopped);
                self.waiters.answer(k, || Err(Refused::Stopped));
                tracing::info!(db = %path.display(), "replication stopped");
            }
            Then::Unregister => {
                self.forget(k);
                if self.registry.patterns.matches(&path).is_some() {
                    self.registry.unregistered.insert(path.clone());
                }
                tracing::info!(db = %path.display(), "unregistered; its files and replica are left as they are");
            }
        }
    }

    fn start_replicating(&mut self, path: &Path) -> Result<Outcome, Refused> {
        let k = self.known(path).ok_or(Refused::NotFound)?;
        if self.pending.contains_key(&k) {
            return Err(Refused::Invalid(format!(
                "{} is stopping: start it again once it has stopped",
                path.display()
            )));
        }
        if self
            .registry
            .entry(&k)
            .is_none_or(|e| e.tier != Tier::Stopped)
        {
            return Ok(Outcome::Already);
        }
        self.registry.set_tier(&k, Tier::Queued);
        self.state_dirty = true;
        tracing::info!(db = %path.display(), "replication started");
        self.promote(path);
        Ok(Outcome::Done(TxId::ZERO))
    }

    /// Adds `path`, replicated to `url` (the pattern's replica does not
    /// apply: the operator named this one).
    fn register_db(&mut self, path: &Path, url: &str) -> Result<Outcome, Refused> {
        if self.known(path).is_some() {
            return Ok(Outcome::Already);
        }
        if !path.is_absolute() || path.to_str().is_none() {
            return Err(Refused::Invalid(format!(
                "{}: an absolute UTF-8 path is needed",
                path.display()
            )));
        }
        if !path.is_file() {
            return Err(Refused::Invalid(format!(
                "{}: no such database file",
                path.display()
            )));
        }
        let opener = self
            .opener
            .clone()
            .ok_or_else(|| Refused::Invalid("this fleet cannot open replicas from a URL".into()))?;
        let template = opener
            .template_for(url)
            .map_err(|e| Refused::Invalid(format!("invalid replica url: {e:#}")))?;
        self.registry.unregistered.remove(path);
        self.registry
            .registered
            .insert(path.to_path_buf(), url.to_string());
        let Some(k) = self.registry.insert(path, Entry::queued()) else {
            self.registry.registered.remove(path);
            return Err(Refused::Invalid(format!(
                "{}: cannot be keyed",
                path.display()
            )));
        };
        self.extras.insert(k.clone(), Arc::from(template));
        if let Some(dir) = path.parent() {
            self.detector.watch(vec![dir.to_path_buf()]);
        }
        self.state_dirty = true;
        tracing::info!(db = %path.display(), replica = %litestreampp_core::redact::redact_url(url), "registered");
        self.promote(path);
        Ok(Outcome::Done(TxId::ZERO))
    }

    /// Registered databases from the state file: their templates, and the
    /// directories to watch. One whose URL no longer opens is reported and
    /// left out.
    pub(super) fn adopt_registered(&mut self, saved: &[(PathBuf, String)]) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for (path, url) in saved {
            let template = match self.opener.as_ref().map(|o| o.template_for(url)) {
                Some(Ok(t)) => t,
                Some(Err(e)) => {
                    self.registry
                        .record_error(path, &format!("registered replica: {e:#}"));
                    continue;
                }
                None => continue,
            };
            self.registry.registered.insert(path.clone(), url.clone());
            if let Some(k) = self.registry.key(path) {
                self.extras.insert(k, Arc::from(template));
                dirs.extend(path.parent().map(Path::to_path_buf));
            }
        }
        dirs
    }
}
