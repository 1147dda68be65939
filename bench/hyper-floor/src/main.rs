//! hyper-floor: the smallest reasonable hyper 1.x reverse proxy.
//!
//! Usage: `hyper-floor LISTEN_ADDR UPSTREAM_ADDR`
//!
//! One thread (tokio current_thread runtime + `LocalSet`), HTTP/1.1 on both
//! sides, keep-alive downstream and upstream, no header read timeout. Each
//! downstream request is forwarded as-is (origin-form URI, Host and other
//! headers untouched) over a pooled upstream connection, and the upstream
//! response (head and `Incoming` body) is streamed back unchanged. It exists
//! only to measure the cost floor of hyper + tokio on this machine.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{spawn_local, LocalSet};

/// Any error: hyper's, or an I/O error connecting upstream.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

// mimalloc as `malloc` itself (the `override` feature), as in weft: Rust's
// default allocator then calls its plain `malloc`, not `mi_malloc_aligned`.
extern crate mimalloc;

/// Per-process pool of idle upstream HTTP/1.1 senders. Single-threaded, so
/// `Rc<RefCell<..>>` is enough; it is never borrowed across an `.await`.
#[derive(Clone)]
struct Pool {
    upstream: SocketAddr,
    idle: Rc<RefCell<Vec<SendRequest<Incoming>>>>,
}

impl Pool {
    /// Take an idle sender that can accept a request now, or connect a new
    /// upstream connection (its driver task is spawned on the `LocalSet`).
    async fn take(&self) -> Result<SendRequest<Incoming>, BoxError> {
        {
            let mut idle = self.idle.borrow_mut();
            // Scan from the most recently returned sender. Closed senders are
            // dropped; busy ones (previous response body still streaming)
            // stay in the pool.
            let mut i = idle.len();
            while i > 0 {
                i -= 1;
                if idle[i].is_closed() {
                    idle.swap_remove(i);
                } else if idle[i].is_ready() {
                    return Ok(idle.swap_remove(i));
                }
            }
        }
        let stream = TcpStream::connect(self.upstream).await?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        spawn_local(async move {
            if let Err(e) = conn.await {
                eprintln!("upstream connection error: {e}");
            }
        });
        Ok(sender)
    }

    /// Give a sender back once its response head has arrived. A simple
    /// policy: it becomes reusable (`is_ready`) when the body is done.
    fn put(&self, sender: SendRequest<Incoming>) {
        if !sender.is_closed() {
            self.idle.borrow_mut().push(sender);
        }
    }
}

/// The request handler: forward the request unchanged and stream the
/// response back. A service error makes hyper close the downstream
/// connection (no 502 is written: bench-only simplification that keeps the
/// response body type exactly `Incoming`).
async fn proxy(req: Request<Incoming>, pool: Pool) -> Result<Response<Incoming>, BoxError> {
    let mut sender = pool.take().await?;
    let resp = sender.send_request(req).await?;
    pool.put(sender);
    Ok(resp)
}

/// Serve one downstream connection with hyper's HTTP/1.1 server.
async fn serve_conn(stream: TcpStream, pool: Pool) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| proxy(req, pool.clone()));
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        eprintln!("downstream connection error: {e}");
    }
}

async fn run(listen: SocketAddr, upstream: SocketAddr) {
    let listener = TcpListener::bind(listen).await.expect("bind LISTEN_ADDR");
    eprintln!("hyper-floor ready: {listen} -> {upstream}");
    let pool = Pool { upstream, idle: Rc::new(RefCell::new(Vec::new())) };
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                spawn_local(serve_conn(stream, pool.clone()));
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: hyper-floor LISTEN_ADDR UPSTREAM_ADDR";
    let listen: SocketAddr = args.next().expect(usage).parse().expect("LISTEN_ADDR");
    let upstream: SocketAddr = args.next().expect(usage).parse().expect("UPSTREAM_ADDR");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    LocalSet::new().block_on(&rt, run(listen, upstream));
}
