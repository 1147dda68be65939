//! What the proxy tells about the requests it carried: per-listener
//! counters and a latency histogram (atomics, shared by the workers), the
//! JSON-lines access log (buffered per worker), request ids and W3C trace
//! context.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderValue;
use weft_config::{AccessLog as AccessLogConfig, LogField};

use crate::stream::ProxyStream;

/// Upper bounds of the request duration histogram, in seconds.
pub(crate) const DURATION_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of the plugin callback duration histogram, in seconds.
pub(crate) const CALLBACK_BOUNDS: [f64; 12] = [
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.01,
    0.1,
];

/// A histogram of durations, in relaxed atomics.
pub(crate) struct Durations {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), the last for above every bound.
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Default for Durations {
    /// Over [`DURATION_BOUNDS`].
    fn default() -> Self {
        Durations::with_bounds(&DURATION_BOUNDS)
    }
}

impl Durations {
    pub(crate) fn with_bounds(bounds: &'static [f64]) -> Durations {
        Durations {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Writes the histogram's lines in the Prometheus text format, each
    /// series labelled with `labels` (`key="value"` pairs, comma-separated).
    pub(crate) fn render(&self, out: &mut String, name: &str, labels: &str) {
        use std::fmt::Write as _;
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(self.buckets.iter()) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}\n{name}_sum{{{labels}}} {sum}\n{name}_count{{{labels}}} {cumulative}"
        );
    }
}

/// A listener's request metrics. Relaxed atomics: a scrape may see one
/// request counted in one figure and not yet in another, never a torn value.
#[derive(Default)]
pub(crate) struct ListenerStats {
    pub(crate) responses_by_class: [AtomicU64; 5],
    /// Requests that got no response (the stream was closed).
    pub(crate) closed: AtomicU64,
    pub(crate) durations: Durations,
    pub(crate) active_connections: AtomicI64,
    pub(crate) connections: AtomicU64,
}

impl ListenerStats {
    pub(crate) fn record(&self, status: Option<u16>, elapsed: Duration) {
        match status {
            Some(status) => {
                let class = usize::from(status / 100).clamp(1, 5) - 1;
                self.responses_by_class[class].fetch_add(1, Ordering::Relaxed);
            }
            None => {
                self.closed.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.durations.record(elapsed);
    }
}

/// A worker's access log for one listener: lines gather in a buffer that
/// is written out every 100 ms (and when the worker stops), so a busy
/// worker makes few write calls. Each flush is one `write` to a file opened
/// for appending, so workers' lines never interleave mid-line.
pub(crate) struct AccessLog {
    out: Sink,
    fields: Vec<LogField>,
    buffer: RefCell<Vec<u8>>,
}

enum Sink {
    File(std::fs::File),
    Stdout,
}

/// Above this many buffered bytes a line flushes at once.
const FLUSH_AT: usize = 64 * 1024;

impl AccessLog {
    pub(crate) fn open(config: &AccessLogConfig) -> std::io::Result<AccessLog> {
        let out = if config.path.as_os_str() == "-" {
            Sink::Stdout
        } else {
            Sink::File(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&config.path)?,
            )
        };
        Ok(AccessLog {
            out,
            fields: if config.fields.is_empty() {
                LogField::ALL.to_vec()
            } else {
                config.fields.clone()
            },
            buffer: RefCell::new(Vec::with_capacity(FLUSH_AT)),
        })
    }

    /// Adds the line for a finished stream.
    pub(crate) fn write(&self, stream: &ProxyStream, listener: &str) {
        let full = {
            let mut buffer = self.buffer.borrow_mut();
            // Fields in the configured order (a JSON map would sort them).
            buffer.push(b'{');
            let mut first = true;
            for field in &self.fields {
                let Some(value) = value_of(*field, stream, listener) else {
                    continue;
                };
                if !first {
                    buffer.push(b',');
                }
                first = false;
                let _ = serde_json::to_writer(&mut *buffer, field.name());
                buffer.push(b':');
                let _ = serde_json::to_writer(&mut *buffer, &value);
            }
            buffer.extend_from_slice(b"}\n");
            buffer.len() >= FLUSH_AT
        };
        if full {
            self.flush();
        }
    }

    pub(crate) fn flush(&self) {
        let pending = std::mem::take(&mut *self.buffer.borrow_mut());
        if pending.is_empty() {
            return;
        }
        let written = match &self.out {
            Sink::File(file) => (&*file).write_all(&pending),
            Sink::Stdout => std::io::stdout().lock().write_all(&pending),
        };
        if let Err(err) = written {
            tracing::warn!(
                "access log write failed, {} bytes lost: {err}",
                pending.len()
            );
        }
        let mut buffer = self.buffer.borrow_mut();
        if buffer.is_empty() {
            // Keep the allocation.
            *buffer = pending;
            buffer.clear();
        }
    }
}

fn value_of(field: LogField, s: &ProxyStream, listener: &str) -> Option<serde_json::Value> {
    use serde_json::Value;
    let text = |v: &str| Some(Value::String(v.to_string()));
    let header = |name: &str| {
        s.request_headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| Value::String(v.to_string()))
    };
    match field {
        LogField::StartTime => text(&rfc3339(s.started_at())),
        LogField::Method => text(s.method.as_str()),
        LogField::Authority => text(&s.authority),
        LogField::Path => text(&s.path),
        LogField::Protocol => text(&format!("{:?}", s.version())),
        LogField::Status => Some(s.status.map_or(Value::Null, Value::from)),
        LogField::DurationMs => {
            let ms = s.elapsed().as_secs_f64() * 1000.0;
            Some(Value::from((ms * 1000.0).round() / 1000.0))
        }
        LogField::BytesReceived => Some(Value::from(s.bytes_received())),
        LogField::BytesSent => Some(Value::from(s.bytes_sent.get())),
        LogField::UpstreamCluster => s.cluster.as_deref().and_then(text),
        LogField::UpstreamHost => s.upstream.map(|a| Value::String(a.to_string())),
        LogField::Route => s.route.as_ref().and_then(|r| text(&r.name)),
        LogField::Listener => text(listener),
        LogField::DownstreamRemoteAddress => text(&s.peer().to_string()),
        LogField::DownstreamLocalAddress => text(&s.local().to_string()),
        LogField::RequestId => header("x-request-id"),
        LogField::Traceparent => header("traceparent"),
        LogField::UserAgent => header("user-agent"),
        LogField::Referer => header("referer"),
        LogField::TlsServerName => s
            .tls()
            .and_then(|t| t.server_name.as_deref())
            .and_then(text),
        LogField::PeerIdentity => s
            .tls()
            .and_then(|t| t.peer.as_ref())
            .and_then(|p| p.uri_sans.first().map(String::as_str).or(Some(&p.subject)))
            .and_then(text),
    }
}

pub(crate) use weft_control::rfc3339;

/// A random request id in the UUID v4 format.
pub(crate) fn request_id(a: u64, b: u64) -> HeaderValue {
    let bytes: Vec<u8> = a.to_be_bytes().into_iter().chain(b.to_be_bytes()).collect();
    let hex: String = bytes
        .iter()
        .enumerate()
        .map(|(i, byte)| {
            let byte = match i {
                6 => byte & 0x0f | 0x40,
                8 => byte & 0x3f | 0x80,
                _ => *byte,
            };
            format!("{byte:02x}")
        })
        .collect();
    let id = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("0"))
}

/// The `traceparent` to send on: the incoming trace with a new span id for
/// this hop (its sampled flag kept), or a new sampled trace when there is
/// none or it is malformed.
pub(crate) fn traceparent(incoming: Option<&HeaderValue>, random: [u64; 3]) -> HeaderValue {
    let span = format!("{:016x}", random[2].max(1));
    let parsed = incoming
        .and_then(|v| v.to_str().ok())
        .and_then(parse_traceparent);
    let value = match parsed {
        Some((trace, flags)) => format!("00-{trace}-{span}-{flags}"),
        None => format!("00-{:016x}{:016x}-{span}-01", random[0], random[1].max(1)),
    };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(""))
}

/// (trace id, flags) of a valid version-00 `traceparent`.
fn parse_traceparent(value: &str) -> Option<(&str, &str)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let ok = version == "00"
        && parts.next().is_none()
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    ok.then_some((trace, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_context() {
        let incoming =
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let out = traceparent(Some(&incoming), [1, 2, 0xabc]);
        assert_eq!(
            out,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01"
        );
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            let out = traceparent(Some(&HeaderValue::from_static(bad)), [1, 2, 3]);
            assert_eq!(
                out, "00-00000000000000010000000000000002-0000000000000003-01",
                "{bad}"
            );
        }
        let id = request_id(u64::MAX, 0);
        assert_eq!(id, "ffffffff-ffff-4fff-8000-000000000000");
    }
}
