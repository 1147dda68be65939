//! An external-authorization filter for weft's own tests. Each request
//! pauses while the filter asks cluster `authz` (`GET /check<path>`); a 200
//! lets the request through with the answer's body in `x-auth-said`, any
//! other answer (or a failed call) gets a local 403.

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
        Some(Box::new(Auth))
    }
}

struct Auth;

impl HttpContext for Auth {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let check = format!("/check{path}");
        let headers = vec![
            (":method", "GET"),
            (":path", check.as_str()),
            (":authority", "authz"),
        ];
        match self.dispatch_http_call("authz", headers, None, vec![], Duration::from_secs(5)) {
            Ok(_) => Action::Pause,
            Err(status) => {
                let reason = format!("{status:?}");
                self.send_http_response(500, vec![("x-dispatch", reason.as_str())], None);
                Action::Pause
            }
        }
    }
}

impl Context for Auth {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let status = self.get_http_call_response_header(":status");
        if status.as_deref() == Some("200") {
            let body = self
                .get_http_call_response_body(0, body_size)
                .unwrap_or_default();
            self.set_http_request_header("x-auth-said", Some(&String::from_utf8_lossy(&body)));
            self.resume_http_request();
        } else {
            let status = status.unwrap_or_else(|| "none".to_string());
            self.send_http_response(
                403,
                vec![("x-auth-status", status.as_str())],
                Some(b"denied"),
            );
        }
    }
}
