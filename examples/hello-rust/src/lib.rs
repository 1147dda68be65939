//! hello-rust: the smallest useful weft filter, and the Rust version of
//! the example every language implements the same way (examples/hello.test.yaml).
//!
//! Plugin configuration (JSON): `{"header": "x-hello", "value": "world"}`.
//! Every response gets that header; every request is logged at INFO
//! (`hello: METHOD PATH`) and counted (`hello_requests_total`); `GET
//! /hello-local` is answered by the filter itself.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use serde::Deserialize;

/// The plugin configuration this filter accepts.
#[derive(Deserialize, Clone)]
struct Config {
    header: String,
    value: String,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(HelloRoot { config: None, requests: 0 })
    });
}}

struct HelloRoot {
    /// Shared by every stream's context: nothing is copied per request.
    config: Option<Rc<Config>>,
    /// The `hello_requests_total` counter.
    requests: u32,
}

impl Context for HelloRoot {}

impl RootContext for HelloRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        // Log at the host's level: lines it would drop are not even formatted.
        if let Ok(level) = proxy_wasm::hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let config = match serde_json::from_slice::<Config>(&bytes) {
            Ok(config) if !config.header.is_empty() => config,
            Ok(_) => {
                log::error!("hello: invalid configuration: `header` is empty");
                return false;
            }
            Err(err) => {
                log::error!(
                    "hello: invalid configuration: {err}; expected {{\"header\": ..., \"value\": ...}}"
                );
                return false;
            }
        };
        match proxy_wasm::hostcalls::define_metric(MetricType::Counter, "hello_requests_total") {
            Ok(id) => self.requests = id,
            Err(status) => {
                log::error!("hello: cannot define hello_requests_total: {status:?}");
                return false;
            }
        }
        log::info!("hello: adding {}: {}", config.header, config.value);
        self.config = Some(Rc::new(config));
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        Some(Box::new(Hello {
            config,
            requests: self.requests,
        }))
    }
}

struct Hello {
    config: Rc<Config>,
    requests: u32,
}

impl Context for Hello {}

impl HttpContext for Hello {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let _ = proxy_wasm::hostcalls::increment_metric(self.requests, 1);
        // Each header read is a host call and a copy into the guest: the
        // method is read only when it is used (the INFO line, the local path).
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let logged = log::log_enabled!(log::Level::Info);
        if !logged && path != "/hello-local" {
            return Action::Continue;
        }
        let method = self.get_http_request_header(":method").unwrap_or_default();
        log::info!("hello: {method} {path}");
        if method == "GET" && path == "/hello-local" {
            self.send_http_response(
                200,
                vec![
                    ("content-type", "text/plain"),
                    (self.config.header.as_str(), self.config.value.as_str()),
                ],
                Some(b"hello\n"),
            );
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_response_header(&self.config.header, &self.config.value);
        Action::Continue
    }
}
