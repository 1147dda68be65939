//! What a filter logs (and what the runtime logs about it), captured per
//! call instead of printed.

use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One line logged while the filter ran.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The message.
    pub message: String,
    /// True for the filter's own lines (`proxy_log`, stdout/stderr);
    /// false for what the runtime said about it (traps, refused calls).
    pub from_filter: bool,
}

impl std::fmt::Display for LogLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = if self.from_filter { "" } else { "(weft) " };
        write!(f, "[{}] {source}{}", self.level, self.message)
    }
}

/// Collects log lines; [`Capture::dispatch`] makes a dispatcher that
/// records into it.
#[derive(Clone, Default)]
pub(crate) struct Capture(Arc<Mutex<Vec<LogLine>>>);

impl Capture {
    pub(crate) fn dispatch(&self) -> tracing::Dispatch {
        tracing::Dispatch::new(tracing_subscriber::registry().with(self.clone()))
    }

    /// Takes the lines logged so far.
    pub(crate) fn take(&self) -> Vec<LogLine> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut message = Message::default();
        event.record(&mut message);
        let line = LogLine {
            level: event.metadata().level().as_str().to_ascii_lowercase(),
            message: message.0,
            from_filter: event.metadata().target() == "weft::filter",
        };
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }
}
