//! One timer queue for the background work of many databases (compaction,
//! snapshots, retention), run by a bounded pool of workers.
//!
//! Each job is in the queue at most once, at the time its next work is due;
//! a job with nothing due is not in the queue at all, so an idle database
//! costs neither a timer nor a wake-up. A job that is rescheduled while it
//! runs is run again once it finishes.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

/// Work the scheduler runs.
#[async_trait]
pub trait Job: Send + Sync + 'static {
    /// Stable identity: one queue entry per id.
    fn id(&self) -> u64;
    /// Does what is due and returns when more will be due, if ever.
    async fn run(&self) -> Option<Instant>;
}

#[derive(Default)]
struct State {
    /// (due, id), earliest first.
    queue: BTreeSet<(Instant, u64)>,
    due: HashMap<u64, Instant>,
    jobs: HashMap<u64, Arc<dyn Job>>,
    /// Jobs running now, with a time if rescheduled meanwhile.
    running: HashMap<u64, Option<Instant>>,
    closed: bool,
}

impl State {
    fn enqueue(&mut self, id: u64, at: Instant) {
        if let Some(old) = self.due.get(&id).copied() {
            if old <= at {
                return; // already due at least as early
            }
            self.queue.remove(&(old, id));
        }
        self.due.insert(id, at);
        self.queue.insert((at, id));
    }
}

struct Inner {
    state: Mutex<State>,
    wake: Notify,
    workers: Arc<Semaphore>,
}

/// A handle on the scheduler; clones share it.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (queued, running) = self.counts();
        f.debug_struct("Scheduler")
            .field("queued", &queued)
            .field("running", &running)
            .finish()
    }
}

impl Scheduler {
    /// Starts a scheduler running at most `workers` jobs at once, on the
    /// current tokio runtime.
    pub fn start(workers: usize) -> Scheduler {
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            workers: Arc::new(Semaphore::new(workers.max(1))),
        });
        tokio::spawn(dispatch(inner.clone()));
        Scheduler { inner }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the state is still
        // consistent (every update is a single step).
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers `job` (replacing one with the same id) and queues it at
    /// `at`, or now.
    pub fn add(&self, job: Arc<dyn Job>, at: Option<Instant>) {
        let id = job.id();
        {
            let mut s = self.lock();
            s.jobs.insert(id, job);
        }
        self.schedule(id, at.unwrap_or_else(Instant::now));
    }

    /// Queues job `id` at `at` unless it is already queued earlier.
    pub fn schedule(&self, id: u64, at: Instant) {
        let mut s = self.lock();
        if s.closed || !s.jobs.contains_key(&id) {
            return;
        }
        if let Some(pending) = s.running.get_mut(&id) {
            *pending = Some(pending.map_or(at, |p| p.min(at)));
            return;
        }
        s.enqueue(id, at);
        drop(s);
        self.inner.wake.notify_one();
    }

    /// Removes job `id`; a run in progress finishes.
    pub fn remove(&self, id: u64) {
        let mut s = self.lock();
        s.jobs.remove(&id);
        if let Some(at) = s.due.remove(&id) {
            s.queue.remove(&(at, id));
        }
    }

    /// (queued, running) job counts.
    pub fn counts(&self) -> (usize, usize) {
        let s = self.lock();
        (s.queue.len(), s.running.len())
    }

    /// When job `id` is next due, if it is queued.
    pub fn due(&self, id: u64) -> Option<Instant> {
        self.lock().due.get(&id).copied()
    }

    /// Stops dispatching; runs in progress finish.
    pub fn close(&self) {
        self.lock().closed = true;
        self.inner.wake.notify_one();
    }

    /// Waits until no job is running or due by now (tests, shutdown).
    pub async fn settle(&self) {
        loop {
            let busy = {
                let s = self.lock();
                let now = Instant::now();
                !s.running.is_empty() || s.queue.first().is_some_and(|(t, _)| *t <= now)
            };
            if !busy {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

async fn dispatch(inner: Arc<Inner>) {
    let sched = Scheduler {
        inner: inner.clone(),
    };
    loop {
        let next = {
            let s = sched.lock();
            if s.closed {
                return;
            }
            s.queue.first().copied()
        };
        match next {
            None => inner.wake.notified().await,
            Some((at, _)) if at > Instant::now() => {
                tokio::select! {
                    _ = inner.wake.notified() => {}
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            Some(_) => {
                let Ok(permit) = inner.workers.clone().acquire_owned().await else {
                    return;
                };
                // Take the earliest due job now that a worker is free.
                let job = {
                    let mut s = sched.lock();
                    match s.queue.first().copied() {
                        Some((at, id)) if at <= Instant::now() => {
                            s.queue.remove(&(at, id));
                            s.due.remove(&id);
                            let job = s.jobs.get(&id).cloned();
                            if job.is_some() {
                                s.running.insert(id, None);
                            }
                            job
                        }
                        _ => None,
                    }
                };
                let Some(job) = job else { continue };
                let sched = sched.clone();
                tokio::spawn(async move {
                    let id = job.id();
                    let next = job.run().await;
                    drop(permit);
                    let mut s = sched.lock();
                    let pending = s.running.remove(&id).flatten();
                    let at = match (next, pending) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    if let Some(at) = at
                        && s.jobs.contains_key(&id)
                        && !s.closed
                    {
                        s.enqueue(id, at);
                        drop(s);
                        sched.inner.wake.notify_one();
                    }
                });
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;

    struct Counter {
        id: u64,
        runs: AtomicU32,
        again: u32,
        log: Arc<Mutex<Vec<u64>>>,
    }

    #[async_trait]
    impl Job for Counter {
        fn id(&self) -> u64 {
            self.id
        }
        async fn run(&self) -> Option<Instant> {
            self.log.lock().unwrap().push(self.id);
            let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
            (n < self.again).then(|| Instant::now() + Duration::from_millis(20))
        }
    }

    fn counter(id: u64, again: u32, log: &Arc<Mutex<Vec<u64>>>) -> Arc<Counter> {
        Arc::new(Counter {
            id,
            runs: AtomicU32::new(0),
            again,
            log: log.clone(),
        })
    }

    #[tokio::test]
    async fn runs_in_due_order_and_reschedules() {
        let s = Scheduler::start(1);
        let log = Arc::new(Mutex::new(Vec::new()));
        let now = Instant::now();
        let a = counter(1, 3, &log);
        let b = counter(2, 1, &log);
        s.add(a.clone(), Some(now + Duration::from_millis(30)));
        s.add(b.clone(), Some(now + Duration::from_millis(10)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.settle().await;
        assert_eq!(a.runs.load(Ordering::SeqCst), 3);
        assert_eq!(b.runs.load(Ordering::SeqCst), 1);
        assert_eq!(log.lock().unwrap()[..2], [2, 1]);
        assert_eq!(s.counts(), (0, 0), "nothing due: nothing queued");
    }

    #[tokio::test]
    async fn earlier_schedule_wins_and_removed_jobs_stop() {
        let s = Scheduler::start(2);
        let log = Arc::new(Mutex::new(Vec::new()));
        let a = counter(7, 1, &log);
        let far = Instant::now() + Duration::from_secs(3600);
        s.add(a.clone(), Some(far));
        s.schedule(7, far + Duration::from_secs(1)); // later: ignored
        assert_eq!(s.due(7), Some(far));
        s.schedule(7, Instant::now());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(a.runs.load(Ordering::SeqCst), 1);
        s.remove(7);
        s.schedule(7, Instant::now());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(a.runs.load(Ordering::SeqCst), 1);
    }
}
