//! hello-rust: the smallest useful weft filter.
//!
//! Plugin configuration (JSON): `{"header": "x-hello", "value": "world"}`.
//! Every response gets that header; every request is logged at INFO.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

/// The plugin configuration this filter accepts.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Config {
    header: String,
    value: String,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(HelloRoot { config: None }) });
}}

struct HelloRoot {
    config: Option<Config>,
}

impl Context for HelloRoot {}

impl RootContext for HelloRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            log::error!("hello-rust: missing plugin configuration; expected {{\"header\": ..., \"value\": ...}}");
            return false;
        };
        match serde_json::from_slice::<Config>(&bytes) {
            Ok(config) => {
                log::info!(
                    "hello-rust: configured to add {}: {}",
                    config.header,
                    config.value
                );
                self.config = Some(config);
                true
            }
            Err(err) => {
                log::error!("hello-rust: invalid plugin configuration: {err}");
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        Some(Box::new(Hello { context_id, config }))
    }
}

struct Hello {
    context_id: u32,
    config: Config,
}

impl Context for Hello {}

impl HttpContext for Hello {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let method = self.get_http_request_header(":method").unwrap_or_default();
        let path = self.get_http_request_header(":path").unwrap_or_default();
        log::info!("hello-rust: request #{} {method} {path}", self.context_id);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_response_header(&self.config.header, &self.config.value);
        Action::Continue
    }
}
