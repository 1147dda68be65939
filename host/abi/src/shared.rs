//! What VMs share across workers: the key-value store (with
//! compare-and-swap) and metrics. This is the only cross-worker state the
//! ABI has; everything else a VM touches is its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::abi::Status;

/// A host function a plugin can call by name with
/// `proxy_call_foreign_function`: bytes in, bytes out.
pub type ForeignFunction = Arc<dyn Fn(&[u8]) -> Result<Vec<u8>, Status> + Send + Sync>;

/// Called (on any thread) when an item is enqueued on a queue a VM
/// registered, with the queue's id: the embedder arranges for
/// `Vm::on_queue_ready` to run on the VM that registered it.
pub type QueueNotifier = Arc<dyn Fn(u32) + Send + Sync>;

/// Process-wide state behind the shared-data, shared-queue, metrics and
/// foreign-function host functions.
#[derive(Default)]
pub(crate) struct SharedState {
    data: Mutex<SharedData>,
    queues: Mutex<Vec<Queue>>,
    metrics: RwLock<Vec<Arc<Metric>>>,
    foreign: RwLock<HashMap<String, ForeignFunction>>,
}

/// A shared queue; its id is its index plus one.
struct Queue {
    vm_id: String,
    name: String,
    items: std::collections::VecDeque<Vec<u8>>,
    /// Who hears about new items: the VM that registered the queue last.
    owner: Option<QueueNotifier>,
}

/// The most items a queue keeps; enqueueing on a full queue drops the
/// oldest item, so a queue nobody drains cannot exhaust memory.
pub const MAX_QUEUE_ITEMS: usize = 10_000;

#[derive(Default)]
struct SharedData {
    /// By VM id. Nested, so that a lookup borrows the guest's key instead
    /// of building an owned (vm_id, key) pair.
    entries: HashMap<String, VmData>,
    next_cas: u32,
}

/// One VM id's shared data: key → (value, cas).
type VmData = HashMap<Vec<u8>, (Vec<u8>, u32)>;

impl SharedState {
    /// `proxy_get_shared_data`: the value and its CAS token.
    pub(crate) fn get(&self, vm_id: &str, key: &[u8], out: &mut Vec<u8>) -> Result<u32, Status> {
        let data = self.data.lock().map_err(|_| Status::InternalFailure)?;
        let (value, cas) = data
            .entries
            .get(vm_id)
            .and_then(|entries| entries.get(key))
            .ok_or(Status::NotFound)?;
        out.clear();
        out.extend_from_slice(value);
        Ok(*cas)
    }

    /// `proxy_set_shared_data`: a non-zero `cas` must match the stored
    /// token of an existing key; every successful set gets a new token.
    pub(crate) fn set(
        &self,
        vm_id: &str,
        key: &[u8],
        value: &[u8],
        cas: u32,
    ) -> Result<(), Status> {
        let mut data = self.data.lock().map_err(|_| Status::InternalFailure)?;
        data.next_cas = data.next_cas.wrapping_add(1).max(1);
        let next = data.next_cas;
        let entries = match data.entries.get_mut(vm_id) {
            Some(entries) => entries,
            None => data.entries.entry(vm_id.to_string()).or_default(),
        };
        match entries.get_mut(key) {
            Some(entry) => {
                if cas != 0 && cas != entry.1 {
                    return Err(Status::CasMismatch);
                }
                entry.0.clear();
                entry.0.extend_from_slice(value);
                entry.1 = next;
            }
            None => {
                entries.insert(key.to_vec(), (value.to_vec(), next));
            }
        }
        Ok(())
    }

    /// `proxy_register_shared_queue`: opens (or creates) the queue `name`
    /// of `vm_id`, and makes `owner` the one told about new items.
    pub(crate) fn register_queue(
        &self,
        vm_id: &str,
        name: &str,
        owner: Option<QueueNotifier>,
    ) -> Result<u32, Status> {
        let mut queues = self.queues.lock().map_err(|_| Status::InternalFailure)?;
        let index = match queues
            .iter()
            .position(|q| q.vm_id == vm_id && q.name == name)
        {
            Some(index) => index,
            None => {
                queues.push(Queue {
                    vm_id: vm_id.to_string(),
                    name: name.to_string(),
                    items: Default::default(),
                    owner: None,
                });
                queues.len() - 1
            }
        };
        queues[index].owner = owner;
        Ok(index as u32 + 1)
    }

    /// `proxy_resolve_shared_queue`: the id of an existing queue.
    pub(crate) fn resolve_queue(&self, vm_id: &str, name: &str) -> Result<u32, Status> {
        let queues = self.queues.lock().map_err(|_| Status::InternalFailure)?;
        queues
            .iter()
            .position(|q| q.vm_id == vm_id && q.name == name)
            .map(|index| index as u32 + 1)
            .ok_or(Status::NotFound)
    }

    /// `proxy_enqueue_shared_queue`; tells the queue's owner, outside the lock.
    pub(crate) fn enqueue(&self, id: u32, item: &[u8]) -> Result<(), Status> {
        let owner = {
            let mut queues = self.queues.lock().map_err(|_| Status::InternalFailure)?;
            let queue = queues
                .get_mut((id as usize).wrapping_sub(1))
                .ok_or(Status::NotFound)?;
            if queue.items.len() >= MAX_QUEUE_ITEMS {
                queue.items.pop_front();
            }
            queue.items.push_back(item.to_vec());
            queue.owner.clone()
        };
        if let Some(owner) = owner {
            owner(id);
        }
        Ok(())
    }

    /// `proxy_dequeue_shared_queue`: the oldest item, or EMPTY.
    pub(crate) fn dequeue(&self, id: u32) -> Result<Vec<u8>, Status> {
        let mut queues = self.queues.lock().map_err(|_| Status::InternalFailure)?;
        let queue = queues
            .get_mut((id as usize).wrapping_sub(1))
            .ok_or(Status::NotFound)?;
        queue.items.pop_front().ok_or(Status::Empty)
    }

    /// `proxy_define_metric`: the same name and kind always give the same
    /// metric, so each worker's VM defining it shares one value.
    pub(crate) fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, Status> {
        let mut metrics = self.metrics.write().map_err(|_| Status::InternalFailure)?;
        if let Some((id, metric)) = metrics.iter().enumerate().find(|(_, m)| m.name == name) {
            return if metric.kind == kind {
                Ok(id as u32)
            } else {
                Err(Status::BadArgument)
            };
        }
        metrics.push(Arc::new(Metric::new(kind, name)));
        Ok((metrics.len() - 1) as u32)
    }

    /// The metric with `id`, for a VM to cache.
    pub(crate) fn metric(&self, id: u32) -> Result<Arc<Metric>, Status> {
        let metrics = self.metrics.read().map_err(|_| Status::InternalFailure)?;
        metrics.get(id as usize).cloned().ok_or(Status::NotFound)
    }

    /// Adds (or replaces) a foreign function.
    pub(crate) fn register_foreign(&self, name: &str, function: ForeignFunction) {
        if let Ok(mut foreign) = self.foreign.write() {
            foreign.insert(name.to_string(), function);
        }
    }

    /// The foreign function called `name`.
    pub(crate) fn foreign(&self, name: &[u8]) -> Result<ForeignFunction, Status> {
        let name = std::str::from_utf8(name).map_err(|_| Status::NotFound)?;
        let foreign = self.foreign.read().map_err(|_| Status::InternalFailure)?;
        foreign.get(name).cloned().ok_or(Status::NotFound)
    }

    /// Every metric defined so far.
    pub(crate) fn metrics(&self) -> Vec<Arc<Metric>> {
        self.metrics.read().map(|m| m.clone()).unwrap_or_default()
    }
}

/// The three metric kinds of the ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution of recorded values.
    Histogram,
}

impl MetricKind {
    /// Decodes the ABI number.
    pub fn from_abi(value: i32) -> Option<MetricKind> {
        Some(match value {
            0 => MetricKind::Counter,
            1 => MetricKind::Gauge,
            2 => MetricKind::Histogram,
            _ => return None,
        })
    }
}

/// Upper bounds of histogram buckets: 1-2-5 steps from 1 to 10^9, then +Inf.
pub const HISTOGRAM_BOUNDS: [u64; 28] = [
    1,
    2,
    5,
    10,
    20,
    50,
    100,
    200,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
];

/// One metric a plugin defined. Updates are atomic, so workers never lock.
pub struct Metric {
    /// The name the plugin gave it.
    pub name: String,
    /// Its kind.
    pub kind: MetricKind,
    value: AtomicI64,
    /// Histogram only: counts per bucket (the last is +Inf), sum and count.
    buckets: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
}

/// A point-in-time reading of a metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricValue {
    /// Counter or gauge value.
    Value(i64),
    /// Histogram: cumulative counts per bound of [`HISTOGRAM_BOUNDS`] (then
    /// +Inf), sum and count.
    Histogram {
        /// Cumulative counts, one per bound plus +Inf.
        cumulative: Vec<u64>,
        /// Sum of recorded values.
        sum: u64,
        /// Number of recorded values.
        count: u64,
    },
}

impl Metric {
    fn new(kind: MetricKind, name: &str) -> Metric {
        let buckets = match kind {
            MetricKind::Histogram => (0..=HISTOGRAM_BOUNDS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            _ => Vec::new(),
        };
        Metric {
            name: name.to_string(),
            kind,
            value: AtomicI64::new(0),
            buckets,
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// `proxy_increment_metric`: counters take non-negative offsets, gauges
    /// any; histograms are recorded, not incremented.
    pub(crate) fn increment(&self, offset: i64) -> Result<(), Status> {
        match self.kind {
            MetricKind::Counter if offset < 0 => Err(Status::BadArgument),
            MetricKind::Counter | MetricKind::Gauge => {
                self.value.fetch_add(offset, Ordering::Relaxed);
                Ok(())
            }
            MetricKind::Histogram => Err(Status::BadArgument),
        }
    }

    /// `proxy_record_metric`: adds to a counter, sets a gauge, records a
    /// histogram value (as Envoy does).
    pub(crate) fn record(&self, value: u64) -> Result<(), Status> {
        match self.kind {
            MetricKind::Counter => {
                self.value.fetch_add(value as i64, Ordering::Relaxed);
            }
            MetricKind::Gauge => self.value.store(value as i64, Ordering::Relaxed),
            MetricKind::Histogram => {
                let bucket = HISTOGRAM_BOUNDS.partition_point(|&bound| bound < value);
                self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
                self.sum.fetch_add(value, Ordering::Relaxed);
                self.count.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// `proxy_get_metric`: counters and gauges only.
    pub(crate) fn get(&self) -> Result<u64, Status> {
        match self.kind {
            MetricKind::Histogram => Err(Status::BadArgument),
            _ => Ok(self.value.load(Ordering::Relaxed) as u64),
        }
    }

    /// The current value, for exporters.
    pub fn read(&self) -> MetricValue {
        match self.kind {
            MetricKind::Histogram => {
                let mut total = 0;
                let cumulative = self
                    .buckets
                    .iter()
                    .map(|b| {
                        total += b.load(Ordering::Relaxed);
                        total
                    })
                    .collect();
                MetricValue::Histogram {
                    cumulative,
                    sum: self.sum.load(Ordering::Relaxed),
                    count: self.count.load(Ordering::Relaxed),
                }
            }
            _ => MetricValue::Value(self.value.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_by_vm_id_and_name() {
        let shared = SharedState::default();
        assert_eq!(shared.resolve_queue("vm", "q"), Err(Status::NotFound));
        let heard = Arc::new(Mutex::new(Vec::new()));
        let ears = heard.clone();
        let id = shared
            .register_queue(
                "vm",
                "q",
                Some(Arc::new(move |id| ears.lock().unwrap().push(id))),
            )
            .unwrap();
        assert_eq!(
            shared.register_queue("vm", "q", None).unwrap(),
            id,
            "registering again opens it"
        );
        assert_eq!(shared.resolve_queue("vm", "q").unwrap(), id);
        assert_eq!(shared.resolve_queue("other", "q"), Err(Status::NotFound));
        assert_eq!(shared.dequeue(id), Err(Status::Empty));
        assert_eq!(shared.enqueue(99, b"x"), Err(Status::NotFound));
        assert_eq!(shared.enqueue(0, b"x"), Err(Status::NotFound));

        // The last registration (without a notifier) owns it now.
        shared.enqueue(id, b"one").unwrap();
        assert!(heard.lock().unwrap().is_empty());
        let ears = heard.clone();
        shared
            .register_queue(
                "vm",
                "q",
                Some(Arc::new(move |id| ears.lock().unwrap().push(id))),
            )
            .unwrap();
        shared.enqueue(id, b"two").unwrap();
        assert_eq!(*heard.lock().unwrap(), vec![id]);
        assert_eq!(shared.dequeue(id).unwrap(), b"one");
        assert_eq!(shared.dequeue(id).unwrap(), b"two");
        assert_eq!(shared.dequeue(id), Err(Status::Empty));
    }

    #[test]
    fn cas_protects_updates() {
        let shared = SharedState::default();
        let mut out = Vec::new();
        assert_eq!(shared.get("vm", b"k", &mut out), Err(Status::NotFound));
        shared.set("vm", b"k", b"v1", 0).unwrap();
        let cas = shared.get("vm", b"k", &mut out).unwrap();
        assert_eq!(out, b"v1");
        shared.set("vm", b"k", b"v2", cas).unwrap();
        assert_eq!(
            shared.set("vm", b"k", b"v3", cas),
            Err(Status::CasMismatch),
            "stale token"
        );
        shared.get("vm", b"k", &mut out).unwrap();
        assert_eq!(out, b"v2");
        assert_eq!(
            shared.get("other-vm", b"k", &mut out),
            Err(Status::NotFound),
            "scoped by VM id"
        );
        shared.set("other-vm", b"k", b"theirs", 0).unwrap();
        shared.get("vm", b"k", &mut out).unwrap();
        assert_eq!(out, b"v2", "another VM id's key of the same name");
        shared.get("other-vm", b"k", &mut out).unwrap();
        assert_eq!(out, b"theirs");
    }

    #[test]
    fn metrics_by_kind() {
        let shared = SharedState::default();
        let c = shared.define_metric(MetricKind::Counter, "c").unwrap();
        assert_eq!(
            shared.define_metric(MetricKind::Counter, "c").unwrap(),
            c,
            "same name, same metric"
        );
        assert_eq!(
            shared.define_metric(MetricKind::Gauge, "c"),
            Err(Status::BadArgument)
        );
        let counter = shared.metric(c).unwrap();
        counter.increment(2).unwrap();
        counter.record(3).unwrap();
        assert_eq!(counter.increment(-1), Err(Status::BadArgument));
        assert_eq!(counter.get().unwrap(), 5);

        let h = shared
            .metric(shared.define_metric(MetricKind::Histogram, "h").unwrap())
            .unwrap();
        for v in [1, 3, 3, 2_000_000_000] {
            h.record(v).unwrap();
        }
        assert_eq!(h.get(), Err(Status::BadArgument));
        let MetricValue::Histogram {
            cumulative,
            sum,
            count,
        } = h.read()
        else {
            panic!()
        };
        assert_eq!(
            (cumulative[0], cumulative[2], *cumulative.last().unwrap()),
            (1, 3, 4)
        );
        assert_eq!(
            cumulative[HISTOGRAM_BOUNDS.len() - 1],
            3,
            "the last value is above every bound"
        );
        assert_eq!((sum, count), (2_000_000_007, 4));
    }
}
