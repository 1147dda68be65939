//! A coarse timer for deadlines that need no precision, one per worker:
//! hyper's HTTP/1 header-read deadline, and upstream deadlines seconds
//! away (`forward::Exchange::tries`).
//!
//! hyper arms the header deadline for every request head it waits for:
//! with tokio's timer, each one is a clock read, a timer-wheel
//! registration and a deregistration when the head arrives (~1,900
//! instructions per request here). This timer keeps its clock to the tick: [`CoarseTimer::tick`],
//! which the worker calls every [`TICK`], reads the real clock once and
//! wakes the sleeps that are due. A sleep costs a box and, only if hyper
//! has to wait for the head, one map entry. Deadlines are kept to within
//! two ticks, which is plenty for a slow-client defence measured in
//! seconds.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How often the clock advances and due sleeps are woken.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// hyper's [`hyper::rt::Timer`] on a clock that advances by ticks.
#[derive(Clone)]
pub(crate) struct CoarseTimer(Arc<Shared>);

struct Shared {
    base: Instant,
    /// Nanoseconds from `base` to the last tick.
    now: AtomicU64,
    waiting: Mutex<Waiting>,
}

/// The sleeps a task waits on, in slots reused as they free up (an id is
/// a slot and the generation it was taken in, so a stale id never touches
/// a slot's next sleep).
#[derive(Default)]
struct Waiting {
    slots: Vec<Slot>,
    free: Vec<usize>,
    generation: u64,
}

#[derive(Default)]
struct Slot {
    generation: u64,
    sleep: Option<(Instant, Waker)>,
}

/// Where a registered sleep is.
#[derive(Clone, Copy)]
struct Id {
    slot: usize,
    generation: u64,
}

impl Waiting {
    fn insert(&mut self, deadline: Instant, waker: Waker) -> Id {
        self.generation += 1;
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
        };
        self.slots[slot] = Slot {
            generation: self.generation,
            sleep: Some((deadline, waker)),
        };
        Id {
            slot,
            generation: self.generation,
        }
    }

    /// The sleep `id` names, if it is still waiting.
    fn get_mut(&mut self, id: Id) -> Option<&mut (Instant, Waker)> {
        self.slots
            .get_mut(id.slot)
            .filter(|slot| slot.generation == id.generation)
            .and_then(|slot| slot.sleep.as_mut())
    }

    fn remove(&mut self, id: Id) {
        if self.get_mut(id).is_some() {
            self.free_slot(id.slot);
        }
    }

    fn free_slot(&mut self, slot: usize) {
        self.slots[slot].sleep = None;
        self.free.push(slot);
    }
}

impl CoarseTimer {
    pub(crate) fn new() -> CoarseTimer {
        CoarseTimer(Arc::new(Shared {
            base: Instant::now(),
            now: AtomicU64::new(0),
            waiting: Mutex::new(Waiting::default()),
        }))
    }

    /// The time at the last tick.
    fn now(&self) -> Instant {
        self.0.base + Duration::from_nanos(self.0.now.load(Ordering::Relaxed))
    }

    /// Advances the clock to now and wakes the sleeps that are due.
    pub(crate) fn tick(&self) {
        let now = Instant::now();
        let nanos = u64::try_from(now.duration_since(self.0.base).as_nanos()).unwrap_or(u64::MAX);
        self.0.now.store(nanos, Ordering::Relaxed);
        let mut waiting = self.waiting();
        for slot in 0..waiting.slots.len() {
            let due = waiting.slots[slot]
                .sleep
                .as_ref()
                .is_some_and(|(deadline, _)| *deadline <= now);
            if due {
                if let Some((_, waker)) = waiting.slots[slot].sleep.take() {
                    waker.wake();
                }
                waiting.free_slot(slot);
            }
        }
    }

    /// The sleeps waiting now (for tests).
    #[cfg(test)]
    fn waiting_count(&self) -> usize {
        let waiting = self.waiting();
        waiting.slots.iter().filter(|s| s.sleep.is_some()).count()
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // Nothing panics while holding the lock; a poisoned one is still
        // consistent.
        self.0
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl hyper::rt::Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.sleep_at(deadline))
    }

    fn now(&self) -> Instant {
        CoarseTimer::now(self)
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        if let Some(mut sleep) = sleep.as_mut().downcast_mut_pin::<CoarseSleep>() {
            sleep.deadline = new_deadline;
            sleep.unregister();
        }
    }
}

impl CoarseTimer {
    /// A sleep until `deadline`, woken by the first tick after it.
    pub(crate) fn sleep_at(&self, deadline: Instant) -> CoarseSleep {
        CoarseSleep {
            timer: self.clone(),
            deadline,
            id: None,
        }
    }
}

/// One deadline; registered with its task's waker only once polled
/// before it is due.
pub(crate) struct CoarseSleep {
    timer: CoarseTimer,
    deadline: Instant,
    id: Option<Id>,
}

impl CoarseSleep {
    fn unregister(&mut self) {
        if let Some(id) = self.id.take() {
            self.timer.waiting().remove(id);
        }
    }
}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.timer.now() >= this.deadline {
            this.unregister();
            return Poll::Ready(());
        }
        let mut waiting = this.timer.waiting();
        let entry = this.id.and_then(|id| waiting.get_mut(id));
        match entry {
            Some((_, waker)) => {
                if !waker.will_wake(cx.waker()) {
                    *waker = cx.waker().clone();
                }
            }
            // Not registered yet, or woken by a tick and polled again with
            // a deadline moved on.
            None => this.id = Some(waiting.insert(this.deadline, cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for CoarseSleep {
    fn drop(&mut self) {
        self.unregister();
    }
}

impl hyper::rt::Sleep for CoarseSleep {}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_sleep_is_woken_by_the_first_tick_after_its_deadline() {
        let timer = CoarseTimer::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);

        let mut sleep = timer.sleep(Duration::from_millis(30));
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        assert_eq!(timer.waiting_count(), 1);
        // A tick before the deadline wakes nothing.
        timer.tick();
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        std::thread::sleep(Duration::from_millis(40));
        timer.tick();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(timer.waiting_count(), 0);
        assert!(sleep.as_mut().poll(&mut cx).is_ready());

        // Reset to a later deadline, it waits again.
        timer.reset(&mut sleep, timer.now() + Duration::from_secs(60));
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        assert_eq!(timer.waiting_count(), 1);
        timer.tick();
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        // Dropped, it leaves nothing behind.
        drop(sleep);
        assert_eq!(timer.waiting_count(), 0);
    }

    #[test]
    fn a_sleep_woken_and_dropped_late_leaves_its_slots_next_sleep_alone() {
        let timer = CoarseTimer::new();
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let mut cx = Context::from_waker(&waker);
        let mut early = timer.sleep(Duration::from_millis(1));
        assert!(early.as_mut().poll(&mut cx).is_pending());
        std::thread::sleep(Duration::from_millis(5));
        timer.tick();
        // Its slot is free again and taken by the next sleep...
        let mut late = timer.sleep(Duration::from_secs(60));
        assert!(late.as_mut().poll(&mut cx).is_pending());
        // ...which the first one's drop does not unregister.
        drop(early);
        assert_eq!(timer.waiting_count(), 1);
        drop(late);
        assert_eq!(timer.waiting_count(), 0);
    }
}
