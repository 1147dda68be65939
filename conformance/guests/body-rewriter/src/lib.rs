//! A body-rewriting filter for weft's own tests. It buffers whole bodies
//! (PAUSE until the end of the stream), upper-cases request bodies, answers
//! 403 itself when a request body contains `forbidden`, and appends
//! ` (filtered)` to response bodies.

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
        Some(Box::new(Rewriter))
    }
}

struct Rewriter;

impl Context for Rewriter {}

impl HttpContext for Rewriter {
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        if body.windows(9).any(|w| w == b"forbidden") {
            self.send_http_response(
                403,
                vec![("x-blocked-by", "body-rewriter")],
                Some(b"blocked"),
            );
            return Action::Pause;
        }
        self.set_http_request_body(0, body_size, &body.to_ascii_uppercase());
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        self.set_http_response_body(body_size, 0, b" (filtered)");
        Action::Continue
    }
}
