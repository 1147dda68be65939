//! A gRPC stream for weft's own tests. Each request pauses while the
//! filter opens a stream to `weft.test.Chat/Talk` on cluster `grpc`
//! (metadata `x-from: grpc-stream`) and sends three messages: `one`,
//! `two` and the request path, the last with `end_stream`. Every message
//! that comes back is collected; the initial metadata's `x-server` and the
//! trailing metadata's `x-count` are kept. When the stream closes OK the
//! request goes on with `x-stream-said` (the messages joined with `,`),
//! `x-stream-server` and `x-stream-count`; any other status gets a local
//! 503 with it in `x-grpc-status` and what `proxy_get_status` says in
//! `x-grpc-message`.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Talk::default()))
    }
}

#[derive(Default)]
struct Talk {
    said: Vec<String>,
    server: String,
    count: String,
}

impl HttpContext for Talk {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let metadata = vec![("x-from", &b"grpc-stream"[..])];
        match self.open_grpc_stream("grpc", "weft.test.Chat", "Talk", metadata) {
            Ok(token) => {
                self.send_grpc_stream_message(token, Some(b"one"), false);
                self.send_grpc_stream_message(token, Some(b"two"), false);
                self.send_grpc_stream_message(token, Some(path.as_bytes()), true);
                Action::Pause
            }
            Err(status) => {
                let reason = format!("{status:?}");
                self.send_http_response(500, vec![("x-open", reason.as_str())], None);
                Action::Pause
            }
        }
    }
}

impl Context for Talk {
    fn on_grpc_stream_initial_metadata(&mut self, _token: u32, _count: u32) {
        let server = self.get_grpc_stream_initial_metadata_value("x-server");
        self.server = String::from_utf8_lossy(&server.unwrap_or_default()).into_owned();
    }

    fn on_grpc_stream_message(&mut self, _token: u32, size: usize) {
        let message = self.get_grpc_stream_message(0, size).unwrap_or_default();
        self.said
            .push(String::from_utf8_lossy(&message).into_owned());
    }

    fn on_grpc_stream_trailing_metadata(&mut self, _token: u32, _count: u32) {
        let count = self.get_grpc_stream_trailing_metadata_value("x-count");
        self.count = String::from_utf8_lossy(&count.unwrap_or_default()).into_owned();
    }

    fn on_grpc_stream_close(&mut self, _token: u32, status: u32) {
        if status == 0 {
            self.set_http_request_header("x-stream-said", Some(&self.said.join(",")));
            self.set_http_request_header("x-stream-server", Some(&self.server));
            self.set_http_request_header("x-stream-count", Some(&self.count));
            self.resume_http_request();
        } else {
            let (_, message) = self.get_grpc_status();
            let status = status.to_string();
            let message = message.unwrap_or_default();
            self.send_http_response(
                503,
                vec![
                    ("x-grpc-status", status.as_str()),
                    ("x-grpc-message", message.as_str()),
                ],
                None,
            );
        }
    }
}
