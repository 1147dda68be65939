//! fault: fault injection as a proxy-wasm filter, for chaos testing.
//!
//! A request may be delayed (paused, then continued from the root
//! context's timer) and/or aborted (answered locally with a status), each
//! for a percentage of requests or when a request header asks for it.
//! Put the plugin on the routes to test (weft: a route's `filters`). See
//! README.md for the configuration.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Fault::default()) });
}}

/// How often waiting requests are looked at: the delay's resolution.
const TICK: Duration = Duration::from_millis(10);

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Only requests with these headers (name → exact value) get faults;
    /// e.g. the version header the router filter set before this one.
    #[serde(default, rename = "match")]
    matches: Match,
    #[serde(default)]
    delay: Option<Delay>,
    #[serde(default)]
    abort: Option<Abort>,
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
struct Match {
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Delay {
    /// How long, in milliseconds.
    #[serde(default)]
    fixed_ms: u64,
    /// The share of requests delayed, 0 to 100.
    #[serde(default)]
    percent: f64,
    /// A request header whose value (milliseconds) delays that request.
    #[serde(default)]
    header: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Abort {
    /// The status answered.
    #[serde(default = "default_abort_status")]
    status: u32,
    /// The share of requests aborted, 0 to 100.
    #[serde(default)]
    percent: f64,
    /// A request header whose value (a status) aborts that request.
    #[serde(default)]
    header: Option<String>,
    /// The body of the answer.
    #[serde(default = "default_abort_body")]
    body: String,
}

fn default_abort_status() -> u32 {
    503
}

fn default_abort_body() -> String {
    "fault injected\n".into()
}

impl Config {
    fn check(&self) -> Result<(), String> {
        if self.delay.is_none() && self.abort.is_none() {
            return Err("give `delay`, `abort` or both".into());
        }
        if let Some(delay) = &self.delay {
            if !(0.0..=100.0).contains(&delay.percent) {
                return Err(format!(
                    "`delay.percent`: {} is not 0 to 100",
                    delay.percent
                ));
            }
            if delay.header.is_none() && delay.percent > 0.0 && delay.fixed_ms == 0 {
                return Err("`delay.fixed_ms`: give a delay above 0".into());
            }
        }
        if let Some(abort) = &self.abort {
            if !(0.0..=100.0).contains(&abort.percent) {
                return Err(format!(
                    "`abort.percent`: {} is not 0 to 100",
                    abort.percent
                ));
            }
            if !(200..=599).contains(&abort.status) {
                return Err(format!(
                    "`abort.status`: {} is not 200 to 599",
                    abort.status
                ));
            }
        }
        Ok(())
    }
}

/// Requests waiting out their delay: (context, when, then abort with).
type Waiting = Rc<RefCell<VecDeque<(u32, SystemTime, Option<u32>)>>>;

#[derive(Default)]
struct Fault {
    config: Rc<Config>,
    waiting: Waiting,
    metrics: Rc<Metrics>,
}

#[derive(Default)]
struct Metrics {
    delays: u32,
    aborts: u32,
}

impl Context for Fault {}

impl RootContext for Fault {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let config: Config = match serde_json::from_slice(&bytes) {
            Ok(config) => config,
            Err(err) => {
                log::error!("fault: invalid configuration: {err}");
                return false;
            }
        };
        if let Err(problem) = config.check() {
            log::error!("fault: invalid configuration: {problem}");
            return false;
        }
        let define = |name: &str| proxy_wasm::hostcalls::define_metric(MetricType::Counter, name);
        match (
            define("fault.delays_injected"),
            define("fault.aborts_injected"),
        ) {
            (Ok(delays), Ok(aborts)) => self.metrics = Rc::new(Metrics { delays, aborts }),
            _ => {
                log::error!("fault: cannot define metrics");
                return false;
            }
        }
        if config.delay.is_some() {
            self.set_tick_period(TICK);
        }
        self.config = Rc::new(config);
        true
    }

    fn on_tick(&mut self) {
        let now = self.get_current_time();
        loop {
            let due = {
                let mut waiting = self.waiting.borrow_mut();
                match waiting.front() {
                    Some((_, at, _)) if *at <= now => waiting.pop_front(),
                    _ => None,
                }
            };
            let Some((context, _, abort)) = due else {
                break;
            };
            if proxy_wasm::hostcalls::set_effective_context(context).is_err() {
                continue; // the client went away meanwhile
            }
            match abort {
                Some(status) => {
                    let body = self
                        .config
                        .abort
                        .as_ref()
                        .map(|a| a.body.clone())
                        .unwrap_or_default();
                    let _ = proxy_wasm::hostcalls::send_http_response(
                        status,
                        vec![("x-weft-fault", "abort")],
                        Some(body.as_bytes()),
                    );
                }
                None => {
                    let _ = proxy_wasm::hostcalls::resume_http_request();
                }
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Inject {
            config: self.config.clone(),
            waiting: self.waiting.clone(),
            metrics: self.metrics.clone(),
            context_id,
        }))
    }
}

struct Inject {
    config: Rc<Config>,
    waiting: Waiting,
    metrics: Rc<Metrics>,
    context_id: u32,
}

impl Context for Inject {}

impl HttpContext for Inject {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let matched = self.config.matches.headers.iter().all(|(name, want)| {
            self.get_http_request_header(name).as_deref() == Some(want.as_str())
        });
        if !matched {
            return Action::Continue;
        }
        let now = self.get_current_time();
        let roll = |salt: u64| -> f64 {
            let nanos = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            (mix(nanos ^ u64::from(self.context_id).rotate_left(32) ^ salt) % 10_000) as f64 / 100.0
        };
        let abort = self.config.abort.as_ref().and_then(|abort| {
            let asked = abort
                .header
                .as_ref()
                .and_then(|h| self.get_http_request_header(h))
                .and_then(|v| v.trim().parse::<u32>().ok())
                .filter(|s| (200..=599).contains(s));
            asked.or_else(|| (roll(1) < abort.percent).then_some(abort.status))
        });
        let delay = self.config.delay.as_ref().and_then(|delay| {
            let asked = delay
                .header
                .as_ref()
                .and_then(|h| self.get_http_request_header(h))
                .and_then(|v| v.trim().parse::<u64>().ok());
            asked.or_else(|| (roll(2) < delay.percent).then_some(delay.fixed_ms))
        });
        if abort.is_some() {
            let _ = proxy_wasm::hostcalls::increment_metric(self.metrics.aborts, 1);
        }
        match delay {
            Some(ms) => {
                let _ = proxy_wasm::hostcalls::increment_metric(self.metrics.delays, 1);
                let at = now + Duration::from_millis(ms);
                let mut waiting = self.waiting.borrow_mut();
                // Kept in order of when they are due.
                let i = waiting
                    .iter()
                    .position(|(_, due, _)| *due > at)
                    .unwrap_or(waiting.len());
                waiting.insert(i, (self.context_id, at, abort));
                Action::Pause
            }
            None => match abort {
                Some(status) => {
                    let body = self
                        .config
                        .abort
                        .as_ref()
                        .map(|a| a.body.clone())
                        .unwrap_or_default();
                    self.send_http_response(
                        status,
                        vec![("x-weft-fault", "abort")],
                        Some(body.as_bytes()),
                    );
                    Action::Pause
                }
                None => Action::Continue,
            },
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
