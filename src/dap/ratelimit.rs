//! A sliding-window rate limiter: at most `max` events in any window of `per`.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::{Instant, sleep_until};

use super::client::RateLimit;

/// Keeps the instants of recent events; an event waits until the oldest one leaves the window.
///
/// Waiters are served in the order they arrived: the first waiter holds the (FIFO) lock while it
/// sleeps, so later ones queue behind it instead of racing for the next free slot.
#[derive(Debug)]
pub(super) struct RateLimiter {
    limit: RateLimit,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    /// When the recent events happened, oldest first.
    events: VecDeque<Instant>,
    /// When a waiter last woke up after sleeping for a slot: whoever arrived before then was
    /// held up by the limit, if only by queueing behind that waiter.
    woke_at: Option<Instant>,
}

impl RateLimiter {
    /// `limit.max` must be at least 1.
    pub(super) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            window: Mutex::new(Window {
                // Grows as starts come: a huge limit (meant as "no limit") allocates nothing.
                events: VecDeque::with_capacity((limit.max as usize).min(64)),
                woke_at: None,
            }),
        }
    }

    /// Waits for a free slot and takes it; returns how long the limit held it up (zero when a
    /// slot was free, even if taking it meant a moment's wait for the lock). Dropping the
    /// future before it finishes takes no slot.
    pub(super) async fn acquire(&self) -> Duration {
        let arrived = Instant::now();
        let mut window = self.window.lock().await;
        loop {
            let now = Instant::now();
            while window
                .events
                .front()
                .is_some_and(|&t| now.duration_since(t) >= self.limit.per)
            {
                window.events.pop_front();
            }
            if window.events.len() < self.limit.max as usize {
                window.events.push_back(now);
                let held_up = window.woke_at.is_some_and(|woke| woke > arrived);
                return if held_up {
                    now.duration_since(arrived)
                } else {
                    Duration::ZERO
                };
            }
            if let Some(&oldest) = window.events.front() {
                sleep_until(oldest + self.limit.per).await;
                window.woke_at = Some(Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const PER: Duration = Duration::from_secs(60);

    fn limiter(max: u32) -> Arc<RateLimiter> {
        Arc::new(RateLimiter::new(RateLimit { max, per: PER }))
    }

    /// No window of `PER` holds more than `max` of the (sorted) instants.
    fn assert_within_limit(instants: &[Instant], max: usize) {
        for (i, &start) in instants.iter().enumerate() {
            let in_window = instants[i..]
                .iter()
                .take_while(|&&t| t - start < PER)
                .count();
            assert!(
                in_window <= max,
                "{in_window} events within {PER:?} of event {i}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sequential_starts_take_the_expected_virtual_time() {
        let limiter = limiter(3);
        let begin = Instant::now();
        let mut instants = Vec::new();
        for _ in 0..10 {
            limiter.acquire().await;
            instants.push(Instant::now());
        }
        let offsets: Vec<u64> = instants.iter().map(|t| (*t - begin).as_secs()).collect();
        assert_eq!(offsets, [0, 0, 0, 60, 60, 60, 120, 120, 120, 180]);
        assert_within_limit(&instants, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_waiters_are_served_in_order() {
        let limiter = limiter(2);
        let begin = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for n in 0..7 {
            let (limiter, tx) = (limiter.clone(), tx.clone());
            tokio::spawn(async move {
                let waited = limiter.acquire().await;
                tx.send((n, Instant::now(), waited)).unwrap();
            });
            // Let each task reach the queue before spawning the next, so arrival order is n.
            tokio::task::yield_now().await;
        }
        drop(tx);
        let mut served = Vec::new();
        while let Some(event) = rx.recv().await {
            served.push(event);
        }
        let order: Vec<i32> = served.iter().map(|(n, _, _)| *n).collect();
        assert_eq!(order, [0, 1, 2, 3, 4, 5, 6]);
        let instants: Vec<Instant> = served.iter().map(|(_, t, _)| *t).collect();
        let offsets: Vec<u64> = instants.iter().map(|t| (*t - begin).as_secs()).collect();
        assert_eq!(offsets, [0, 0, 60, 60, 120, 120, 180]);
        assert_within_limit(&instants, 2);
        let waits: Vec<u64> = served.iter().map(|(_, _, w)| w.as_secs()).collect();
        assert_eq!(waits, offsets);
    }

    #[tokio::test(start_paused = true)]
    async fn spaced_starts_do_not_wait() {
        let limiter = limiter(2);
        for _ in 0..5 {
            assert_eq!(limiter.acquire().await, Duration::ZERO);
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    }

    /// On the real clock, where even an uncontended lock takes a few nanoseconds.
    #[tokio::test]
    async fn free_slots_report_no_wait() {
        let limiter = RateLimiter::new(RateLimit { max: 50, per: PER });
        let waits = futures_util::future::join_all((0..50).map(|_| limiter.acquire())).await;
        assert!(waits.iter().all(Duration::is_zero), "{waits:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_takes_no_slot() {
        let limiter = limiter(1);
        limiter.acquire().await;
        let cancelled = tokio::time::timeout(Duration::from_secs(10), limiter.acquire()).await;
        assert!(cancelled.is_err());
        let begin = Instant::now();
        limiter.acquire().await;
        // The slot frees 60 s after the first start, 10 s of which were spent above.
        assert_eq!((Instant::now() - begin).as_secs(), 50);
    }
}
