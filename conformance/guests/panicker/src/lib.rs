//! A hostile filter for weft's own tests. Depending on a request header it
//! panics (`x-panic`), loops forever (`x-loop`) or allocates without bound
//! (`x-alloc`); otherwise it lets the request through.

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
        Some(Box::new(Misbehave))
    }
}

struct Misbehave;

impl Context for Misbehave {}

impl HttpContext for Misbehave {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if let Some(what) = self.get_http_request_header("x-panic") {
            explode(&what);
        }
        if self.get_http_request_header("x-loop").is_some() {
            spin();
        }
        if self.get_http_request_header("x-alloc").is_some() {
            hoard();
        }
        Action::Continue
    }
}

#[inline(never)]
fn explode(what: &str) -> ! {
    panic!("boom: {what}");
}

#[inline(never)]
fn spin() {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

#[inline(never)]
fn hoard() {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        kept.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&kept);
    }
}
