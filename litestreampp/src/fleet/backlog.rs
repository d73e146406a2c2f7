//! The backlog: databases not known to be backed up (new, or changed while
//! we were not running) each get one sync, upload and seal, at most
//! `backlog_rate` a second and `backlog_workers` at once.

use super::registry::Key;

/// The backlog's queue and its rate and worker budget.
#[derive(Debug)]
pub(super) struct Backlog {
    queue: KeyQueue,
    running: usize,
    /// Starts the rate allows now (a token bucket refilled every tick).
    tokens: f64,
    rate: f64,
    workers: usize,
}

impl Backlog {
    pub fn new(rate: u32, workers: usize) -> Backlog {
        Backlog {
            queue: KeyQueue::default(),
            running: 0,
            tokens: 0.0,
            rate: f64::from(rate.max(1)),
            workers,
        }
    }

    pub fn push(&mut self, k: &str) {
        self.queue.push(k);
    }

    /// Replaces the queue (the initial scan builds it in one piece).
    pub fn set_queue(&mut self, q: KeyQueue) {
        self.queue = q;
    }

    /// Refills the rate budget; called every tenth of a second.
    pub fn tick(&mut self) {
        let per_tick = self.rate / 10.0;
        self.tokens = (self.tokens + per_tick).min(per_tick.max(1.0));
    }

    /// The next queued key, if the rate and the workers allow a start now.
    /// The caller checks that it still needs a sync; [`started`](Self::started)
    /// spends the budget.
    pub fn next(&mut self) -> Option<Key> {
        if self.tokens < 1.0 || self.running >= self.workers {
            return None;
        }
        self.queue.pop()
    }

    pub fn started(&mut self) {
        self.tokens -= 1.0;
        self.running += 1;
    }

    pub fn finished(&mut self) {
        self.running -= 1;
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn shrink_to_fit(&mut self) {
        self.queue.shrink_to_fit();
    }
}

/// A FIFO of registry keys in one buffer (NUL-separated; paths never hold
/// NUL): no allocation per queued database, which, freed one by one as the
/// backlog drains, would leave the registry's memory fragmented. Retired
/// databases are not removed: the consumer checks the registry.
#[derive(Debug, Default)]
pub(super) struct KeyQueue {
    buf: String,
    head: usize,
    len: usize,
}

impl KeyQueue {
    pub fn push(&mut self, k: &str) {
        self.buf.push_str(k);
        self.buf.push('\0');
        self.len += 1;
    }

    pub fn pop(&mut self) -> Option<Key> {
        let rest = &self.buf[self.head..];
        let end = rest.find('\0')?;
        let k = Key::from(&rest[..end]);
        self.head += end + 1;
        self.len -= 1;
        if self.head == self.buf.len() {
            self.buf.clear();
            self.head = 0;
        } else if self.head > 1 << 16 && self.head > self.buf.len() / 2 {
            self.buf.drain(..self.head);
            self.head = 0;
        }
        Some(k)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    fn shrink_to_fit(&mut self) {
        self.buf.shrink_to_fit();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn key_queue_is_a_fifo_in_one_buffer() {
        let mut q = KeyQueue::default();
        assert!(q.pop().is_none());
        for i in 0..20_000 {
            q.push(&format!("shard-{:03}/tenant-{i:06}.db", i % 100));
        }
        assert_eq!(q.len(), 20_000);
        for i in 0..15_000 {
            let k = q.pop().unwrap();
            assert_eq!(k, format!("shard-{:03}/tenant-{i:06}.db", i % 100));
        }
        // Compacted as it drains.
        assert!(q.head < q.buf.len() && q.buf.len() <= 10_000 * 27);
        q.push("last.db");
        let rest: Vec<Key> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(rest.len(), 5_001);
        assert_eq!(rest.last().unwrap(), "last.db");
        assert_eq!((q.len(), q.buf.len(), q.head), (0, 0, 0));
    }

    #[test]
    fn the_rate_and_the_workers_bound_the_starts() {
        let mut b = Backlog::new(20, 3); // 2 a tick
        for i in 0..10 {
            b.push(&format!("{i}.db"));
        }
        assert!(b.next().is_none(), "no budget before the first tick");
        b.tick();
        let mut started = 0;
        while b.next().is_some() {
            b.started();
            started += 1;
        }
        assert_eq!(started, 2);
        b.tick();
        while b.next().is_some() {
            b.started();
            started += 1;
        }
        assert_eq!(started, 3, "three workers");
        b.finished();
        b.tick();
        assert!(b.next().is_some());
    }
}
