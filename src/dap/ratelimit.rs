//! A sliding-window rate limiter: at most `max` events in any window of `per`, in this process
//! and, when a [`SharedBudget`] is attached, across every process that shares it.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::{Instant, sleep, sleep_until};

use super::client::RateLimit;

/// A start taken from a shared budget counts this much longer than the API's window: between
/// the take and the request's arrival at the API lie a login perhaps and the network, and two
/// replicas' delays differ.
pub const SHARED_BUDGET_MARGIN: Duration = Duration::from_secs(1);

/// Why a shared budget could not be consulted (its store failed).
pub type BudgetError = Box<dyn std::error::Error + Send + Sync>;

/// What [`SharedBudget::try_take`] returns.
pub type BudgetFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Duration>, BudgetError>> + Send + 'a>>;

/// A query budget kept outside the process, so that several processes (replicas of the daemon
/// on one database) together stay within the API's limit. The client takes a start from it
/// after its own limiter; the application attaches the database's
/// ([`DapClient::share_query_budget`](super::DapClient::share_query_budget)).
pub trait SharedBudget: Send + Sync + fmt::Debug {
    /// Takes one start if fewer than `limit.max` were taken within the last `limit.per`
    /// (`Ok(None)`); otherwise takes nothing and says how long until the oldest start leaves
    /// the window. Atomic across every process sharing the budget.
    fn try_take(&self, limit: RateLimit) -> BudgetFuture<'_>;
}

/// Keeps the instants of recent events; an event waits until the oldest one leaves the window.
///
/// Waiters are served in the order they arrived: the first waiter holds the (FIFO) lock while it
/// sleeps, so later ones queue behind it instead of racing for the next free slot.
#[derive(Debug)]
pub(super) struct RateLimiter {
    limit: RateLimit,
    window: Mutex<Window>,
    /// Consulted once this process's window has room; the first waiter asks it for everyone.
    shared: OnceLock<Arc<dyn SharedBudget>>,
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
            shared: OnceLock::new(),
        }
    }

    /// Attaches a shared budget; false if one is attached already.
    pub(super) fn share(&self, budget: Arc<dyn SharedBudget>) -> bool {
        self.shared.set(budget).is_ok()
    }

    /// Waits for a free slot (here and in the shared budget, if any) and takes it; returns how
    /// long the limit held it up (zero when a slot was free, even if taking it meant a moment's
    /// wait for the lock). Dropping the future before it finishes takes no slot here (a shared
    /// one may be taken and go unused, which only wastes it).
    pub(super) async fn acquire(&self) -> Result<Duration, BudgetError> {
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
                if let Some(shared) = self.shared.get() {
                    let limit = RateLimit {
                        max: self.limit.max,
                        per: self.limit.per + SHARED_BUDGET_MARGIN,
                    };
                    if let Some(wait) = shared.try_take(limit).await? {
                        // Other processes took the budget: ask again when their oldest start
                        // leaves the window (a few milliseconds more, so that it has).
                        sleep(wait.min(limit.per) + Duration::from_millis(5)).await;
                        window.woke_at = Some(Instant::now());
                        continue;
                    }
                }
                let now = Instant::now();
                window.events.push_back(now);
                let held_up = window.woke_at.is_some_and(|woke| woke > arrived);
                return Ok(if held_up {
                    now.duration_since(arrived)
                } else {
                    Duration::ZERO
                });
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
            limiter.acquire().await.unwrap();
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
                let waited = limiter.acquire().await.unwrap();
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
            assert_eq!(limiter.acquire().await.unwrap(), Duration::ZERO);
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    }

    /// On the real clock, where even an uncontended lock takes a few nanoseconds.
    #[tokio::test]
    async fn free_slots_report_no_wait() {
        let limiter = RateLimiter::new(RateLimit { max: 50, per: PER });
        let waits = futures_util::future::join_all((0..50).map(|_| limiter.acquire())).await;
        assert!(
            waits
                .iter()
                .all(|w| w.as_ref().is_ok_and(Duration::is_zero)),
            "{waits:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_takes_no_slot() {
        let limiter = limiter(1);
        limiter.acquire().await.unwrap();
        let cancelled = tokio::time::timeout(Duration::from_secs(10), limiter.acquire()).await;
        assert!(cancelled.is_err());
        let begin = Instant::now();
        limiter.acquire().await.unwrap();
        // The slot frees 60 s after the first start, 10 s of which were spent above.
        assert_eq!((Instant::now() - begin).as_secs(), 50);
    }

    /// A budget in memory, standing in for the database's: what two processes share.
    #[derive(Debug, Default)]
    struct MemoryBudget {
        starts: std::sync::Mutex<VecDeque<Instant>>,
    }

    impl SharedBudget for MemoryBudget {
        fn try_take(&self, limit: RateLimit) -> BudgetFuture<'_> {
            let now = Instant::now();
            let mut starts = self.starts.lock().unwrap();
            while starts.front().is_some_and(|&t| now - t >= limit.per) {
                starts.pop_front();
            }
            let answer = if starts.len() < limit.max as usize {
                starts.push_back(now);
                None
            } else {
                starts.front().map(|&oldest| oldest + limit.per - now)
            };
            Box::pin(async move { Ok(answer) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn two_processes_sharing_a_budget_stay_within_it_together() {
        let budget: Arc<dyn SharedBudget> = Arc::new(MemoryBudget::default());
        let (first, second) = (limiter(3), limiter(3));
        assert!(first.share(budget.clone()));
        assert!(second.share(budget));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for n in 0..10 {
            let limiter = Arc::clone(if n % 2 == 0 { &first } else { &second });
            let tx = tx.clone();
            tokio::spawn(async move {
                limiter.acquire().await.unwrap();
                tx.send(Instant::now()).unwrap();
            });
        }
        drop(tx);
        let mut instants = Vec::new();
        while let Some(at) = rx.recv().await {
            instants.push(at);
        }
        instants.sort();
        assert_eq!(instants.len(), 10);
        // Each process alone would start 3 at once: together they start 3 a window.
        assert_within_limit(&instants, 3);
        assert_eq!(
            instants.iter().filter(|&&t| t == instants[0]).count(),
            3,
            "{instants:?}"
        );
    }

    #[derive(Debug)]
    struct BrokenBudget;

    impl SharedBudget for BrokenBudget {
        fn try_take(&self, _: RateLimit) -> BudgetFuture<'_> {
            Box::pin(async { Err("the database is gone".into()) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_that_cannot_be_read_fails_the_start_and_takes_no_slot() {
        let limiter = limiter(1);
        assert!(limiter.share(Arc::new(BrokenBudget)));
        let error = limiter.acquire().await.unwrap_err();
        assert_eq!(error.to_string(), "the database is gone");
        assert!(!limiter.share(Arc::new(MemoryBudget::default())));
        assert!(limiter.window.lock().await.events.is_empty());
    }
}
