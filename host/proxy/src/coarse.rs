//! A coarse timer for deadlines that need no precision, one per worker
//! thread: hyper's HTTP/1 header-read deadline, and upstream deadlines
//! seconds away (`forward::tries`).
//!
//! hyper arms the header deadline for every request head it waits for:
//! with tokio's timer, each one is a clock read, a timer-wheel
//! registration and a deregistration when the head arrives (~1,900
//! instructions per request here). This timer keeps its clock to the tick: [`CoarseTimer::tick`],
//! which the worker calls every [`TICK`], reads the real clock once and
//! wakes the sleeps that are due. Deadlines are kept to within two ticks,
//! which is plenty for a slow-client defence measured in seconds.
//!
//! The clock and the sleeps waiting on it are the thread's own (a worker
//! is one thread, and every sleep it makes is polled and dropped there):
//! a sleep takes no lock and shares no count with other threads. A
//! [`CoarseTimer`] is only a handle to them, as hyper's `Timer` must be
//! `Send` and `Sync`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How often the clock advances and due sleeps are woken.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// hyper's [`hyper::rt::Timer`] on a clock that advances by ticks: a handle
/// to the calling thread's clock and sleeps.
#[derive(Clone, Copy, Default)]
pub(crate) struct CoarseTimer;

/// A thread's clock and sleeps.
struct Local {
    /// Tells this thread's sleeps from another's (a sleep dropped on
    /// another thread leaves its slot to be freed when it is due).
    thread: u64,
    /// The time at the last tick.
    now: Cell<Instant>,
    waiting: RefCell<Waiting>,
}

thread_local! {
    static LOCAL: Local = Local {
        thread: THREADS.fetch_add(1, Ordering::Relaxed),
        now: Cell::new(Instant::now()),
        waiting: RefCell::default(),
    };
}

static THREADS: AtomicU64 = AtomicU64::new(0);

/// The sleeps the thread's tasks wait on, in slots reused as they free up
/// (an id is a slot and the generation it was taken in, so a stale id
/// never touches a slot's next sleep).
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
    thread: u64,
    slot: usize,
    generation: u64,
}

impl Waiting {
    fn insert(&mut self, thread: u64, deadline: Instant, waker: Waker) -> Id {
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
            thread,
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

    /// Takes out the sleeps due at `now`, into `due`.
    fn take_due(&mut self, now: Instant, due: &mut Vec<Waker>) {
        for slot in 0..self.slots.len() {
            let is_due = self.slots[slot]
                .sleep
                .as_ref()
                .is_some_and(|(deadline, _)| *deadline <= now);
            if is_due {
                if let Some((_, waker)) = self.slots[slot].sleep.take() {
                    due.push(waker);
                }
                self.free_slot(slot);
            }
        }
    }
}

impl CoarseTimer {
    pub(crate) fn new() -> CoarseTimer {
        CoarseTimer
    }

    /// The time at this thread's last tick.
    fn now(&self) -> Instant {
        // Only while the thread is exiting is there no clock: the real one.
        LOCAL
            .try_with(|local| local.now.get())
            .unwrap_or_else(|_| Instant::now())
    }

    /// Advances this thread's clock to now and wakes its sleeps that are due.
    pub(crate) fn tick(&self) {
        let mut due = Vec::new();
        let _ = LOCAL.try_with(|local| {
            let now = Instant::now();
            local.now.set(now);
            local.waiting.borrow_mut().take_due(now, &mut due);
        });
        // Woken outside the borrow: a waker may poll (or drop) a sleep.
        for waker in due {
            waker.wake();
        }
    }

    /// The sleeps waiting now on this thread (for tests).
    #[cfg(test)]
    fn waiting_count(&self) -> usize {
        LOCAL.with(|local| {
            let waiting = local.waiting.borrow();
            waiting.slots.iter().filter(|s| s.sleep.is_some()).count()
        })
    }
}

impl hyper::rt::Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(CoarseTimer::now(self) + duration)
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
        CoarseSleep { deadline, id: None }
    }
}

/// One deadline; registered with its task's waker only once polled
/// before it is due.
pub(crate) struct CoarseSleep {
    deadline: Instant,
    id: Option<Id>,
}

impl CoarseSleep {
    fn unregister(&mut self) {
        if let Some(id) = self.id.take() {
            let _ = LOCAL.try_with(|local| {
                if local.thread == id.thread {
                    local.waiting.borrow_mut().remove(id);
                }
            });
        }
    }
}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let waiting = LOCAL.try_with(|local| {
            if local.now.get() >= this.deadline {
                return false;
            }
            let mut waiting = local.waiting.borrow_mut();
            // Registered on another thread: moved, so registered here anew.
            let entry = this
                .id
                .filter(|id| id.thread == local.thread)
                .and_then(|id| waiting.get_mut(id));
            match entry {
                Some((_, waker)) => {
                    if !waker.will_wake(cx.waker()) {
                        *waker = cx.waker().clone();
                    }
                }
                // Not registered yet, or woken by a tick and polled again
                // with a deadline moved on.
                None => {
                    this.id = Some(waiting.insert(local.thread, this.deadline, cx.waker().clone()))
                }
            }
            true
        });
        if matches!(waiting, Ok(true)) {
            return Poll::Pending;
        }
        // Due (or the thread is exiting: nothing would wake it).
        this.unregister();
        Poll::Ready(())
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
    use std::sync::Arc;
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

    #[test]
    fn each_thread_has_its_own_clock_and_sleeps() {
        let timer = CoarseTimer::new();
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let mut cx = Context::from_waker(&waker);
        let mut here = timer.sleep(Duration::from_secs(60));
        assert!(here.as_mut().poll(&mut cx).is_pending());
        // Another thread's sleep waits there, not here; dropped here, this
        // thread's sleeps are left alone.
        let mut there = std::thread::spawn(move || {
            let timer = CoarseTimer::new();
            let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
            let mut sleep = timer.sleep_at(timer.now() + Duration::from_secs(60));
            assert!(
                Pin::new(&mut sleep)
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
            assert_eq!(timer.waiting_count(), 1);
            sleep
        })
        .join()
        .expect("the other thread");
        assert_eq!(timer.waiting_count(), 1);
        // Polled here, it waits here too.
        assert!(Pin::new(&mut there).poll(&mut cx).is_pending());
        assert_eq!(timer.waiting_count(), 2);
        drop(there);
        drop(here);
        assert_eq!(timer.waiting_count(), 0);
    }
}
