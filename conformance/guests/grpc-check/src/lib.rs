//! A gRPC check for weft's own tests. Each request pauses while the filter
//! calls `weft.test.Checker/Check` on cluster `grpc` with the request path
//! as the message and metadata `x-from: grpc-check`; an OK answer lets the
//! request through with the answer in `x-grpc-said`, any other status gets
//! a local 503 with it in `x-grpc-status` (and what `proxy_get_status`
//! says in `x-grpc-get-status` / `x-grpc-message`).

use std::time::Duration;

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
        Some(Box::new(Check))
    }
}

struct Check;

impl HttpContext for Check {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let metadata = vec![("x-from", &b"grpc-check"[..])];
        let call = self.dispatch_grpc_call(
            "grpc",
            "weft.test.Checker",
            "Check",
            metadata,
            Some(path.as_bytes()),
            Duration::from_secs(5),
        );
        if let Err(status) = call {
            let reason = format!("{status:?}");
            self.send_http_response(500, vec![("x-dispatch", reason.as_str())], None);
        }
        Action::Pause
    }
}

impl Context for Check {
    fn on_grpc_call_response(&mut self, _token: u32, status: u32, size: usize) {
        if status == 0 {
            let said = self
                .get_grpc_call_response_body(0, size)
                .unwrap_or_default();
            self.set_http_request_header("x-grpc-said", Some(&String::from_utf8_lossy(&said)));
            self.resume_http_request();
        } else {
            let (code, message) = self.get_grpc_status();
            let status = status.to_string();
            let code = code.to_string();
            let message = message.unwrap_or_default();
            self.send_http_response(
                503,
                vec![
                    ("x-grpc-status", status.as_str()),
                    ("x-grpc-get-status", code.as_str()),
                    ("x-grpc-message", message.as_str()),
                ],
                None,
            );
        }
    }
}
