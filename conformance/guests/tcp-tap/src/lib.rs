//! A TCP filter for weft's own tests, on the proxy-wasm Rust SDK's
//! `StreamContext`. It holds what the client sends until it has 4 bytes
//! to look at (logging `tcp-tap: waiting, N bytes`): a connection whose
//! first bytes are `DENY` is closed (`tcp-tap: denied`); otherwise
//! `[tap]` is put in front of the client's data, once. What the upstream
//! sends is upper-cased. Close callbacks and the byte counts are logged:
//! `tcp-tap: downstream closed (Remote)`, `tcp-tap: N bytes down, M bytes
//! up`.

use proxy_wasm::traits::{Context, RootContext, StreamContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, PeerType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::StreamContext)
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(Tap::default()))
    }
}

#[derive(Default)]
struct Tap {
    sniffed: bool,
    down: usize,
    up: usize,
}

impl Context for Tap {}

impl StreamContext for Tap {
    fn on_new_connection(&mut self) -> Action {
        let source = self
            .get_property(vec!["source", "address"])
            .unwrap_or_default();
        log::info!(
            "tcp-tap: new connection from {}",
            String::from_utf8_lossy(&source)
        );
        Action::Continue
    }

    fn on_downstream_data(&mut self, size: usize, end_of_stream: bool) -> Action {
        if self.sniffed {
            self.down += size;
            return Action::Continue;
        }
        if size < 4 && !end_of_stream {
            log::info!("tcp-tap: waiting, {size} bytes");
            return Action::Pause;
        }
        let data = self.get_downstream_data(0, size).unwrap_or_default();
        if data.starts_with(b"DENY") {
            log::info!("tcp-tap: denied");
            self.close_downstream();
            return Action::Pause;
        }
        self.sniffed = true;
        self.down += size;
        self.set_downstream_data(0, 0, b"[tap]");
        Action::Continue
    }

    fn on_upstream_data(&mut self, size: usize, _end_of_stream: bool) -> Action {
        self.up += size;
        let data = self.get_upstream_data(0, size).unwrap_or_default();
        self.set_upstream_data(0, size, &data.to_ascii_uppercase());
        Action::Continue
    }

    fn on_downstream_close(&mut self, peer: PeerType) {
        log::info!("tcp-tap: downstream closed ({peer:?})");
    }

    fn on_upstream_close(&mut self, peer: PeerType) {
        log::info!("tcp-tap: upstream closed ({peer:?})");
    }

    fn on_log(&mut self) {
        log::info!("tcp-tap: {} bytes down, {} bytes up", self.down, self.up);
    }
}
