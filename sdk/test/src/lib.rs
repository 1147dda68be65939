//! Test proxy-wasm filters on weft's own runtime, with no proxy and no
//! network.
//!
//! A [`Filter`] is a `.wasm` module (any language) loaded with its plugin
//! configuration exactly as `weft proxy` loads it. [`Filter::send`] runs one
//! request through it — request headers, body and trailers, then the
//! upstream's answer (which the test gives) through the response
//! callbacks, then `proxy_on_done`/`proxy_on_log`/`proxy_on_delete` — and
//! returns an [`Exchange`]: what the upstream would have received, what the
//! client got, the call-outs the filter made, what it logged. Call-outs
//! are answered from the test's mocks; timer ticks are delivered on
//! request; metrics are read from the runtime.
//!
//! ```no_run
//! use weft_test::{Filter, Request};
//!
//! let mut filter = Filter::load("target/filters/hello.wasm")
//!     .configuration(r#"{"header": "x-hello", "value": "world"}"#)
//!     .start()
//!     .unwrap();
//! let exchange = filter.send(Request::get("/")).unwrap();
//! assert_eq!(exchange.response.header("x-hello").as_deref(), Some("world"));
//! ```
//!
//! The same runs from YAML with `weft filter test` ([`suite`]).

#![warn(missing_docs)]

pub mod blackbox;
pub mod conformance;
mod logs;
mod stream;
pub mod suite;

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use weft_abi::{
    Action, FailurePolicy, GrpcCall, GrpcCallResponse, GrpcInbound, GrpcOutbound, GrpcStreamOpen,
    HttpCall, HttpCallResponse, HttpStream, MetricValue, Pairs, PeerType, Plugin, PluginLimits,
    PluginModule, Runtime, StreamAction, Vm, VmError, VmHooks,
};

pub use logs::LogLine;
use stream::MockStream;

/// Why a filter could not be tested.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The module did not load (read, compile, link).
    #[error("{0}")]
    Load(#[from] weft_abi::LoadError),
    /// The runtime could not be made.
    #[error("{0}")]
    Runtime(#[from] weft_abi::RuntimeError),
    /// The plugin did not start or refused its configuration, or a
    /// callback failed outside a request.
    #[error("{0}")]
    Vm(#[from] VmError),
    /// A test file is wrong.
    #[error("{0}")]
    Suite(String),
    /// The plugin did not start: why, and what it logged meanwhile (its
    /// own reason, usually).
    #[error("{error}{}", logged(.logs))]
    Start {
        /// The runtime's reason.
        error: VmError,
        /// What was logged while it tried.
        logs: Vec<LogLine>,
    },
}

fn logged(logs: &[LogLine]) -> String {
    logs.iter()
        .filter(|l| l.from_filter)
        .map(|l| format!("\n  its log: {l}"))
        .collect()
}

/// A filter being set up: [`Filter::load`], then its configuration, then
/// [`FilterBuilder::start`].
#[must_use]
pub struct FilterBuilder {
    module: Module,
    name: String,
    root_id: String,
    vm_id: String,
    configuration: Vec<u8>,
    vm_configuration: Vec<u8>,
    limits: PluginLimits,
    failure_policy: FailurePolicy,
}

enum Module {
    Path(PathBuf),
    Bytes(String, Vec<u8>),
}

impl FilterBuilder {
    /// `plugin_name` (default `filter`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// `plugin_root_id` (default empty).
    pub fn root_id(mut self, root_id: &str) -> Self {
        self.root_id = root_id.to_string();
        self
    }

    /// `plugin_vm_id` (default empty).
    pub fn vm_id(mut self, vm_id: &str) -> Self {
        self.vm_id = vm_id.to_string();
        self
    }

    /// What `proxy_on_configure` reads.
    pub fn configuration(mut self, configuration: impl Into<Vec<u8>>) -> Self {
        self.configuration = configuration.into();
        self
    }

    /// What `proxy_on_vm_start` reads.
    pub fn vm_configuration(mut self, configuration: impl Into<Vec<u8>>) -> Self {
        self.vm_configuration = configuration.into();
        self
    }

    /// CPU deadline of one callback (default 200 ms).
    pub fn callback_deadline(mut self, deadline: Duration) -> Self {
        self.limits.callback_deadline = deadline;
        self
    }

    /// What a failed callback does to the request: `true` skips the
    /// filter, `false` (the default) answers 503, as `fail_open` and
    /// `fail_closed` do in a proxy.
    pub fn fail_open(mut self, open: bool) -> Self {
        self.failure_policy = if open {
            FailurePolicy::FailOpen
        } else {
            FailurePolicy::FailClosed
        };
        self
    }

    /// Compiles the module and starts the plugin: `proxy_on_vm_start` and
    /// `proxy_on_configure` must succeed.
    pub fn start(self) -> Result<Filter, Error> {
        let runtime = Arc::new(Runtime::new()?);
        let logs = logs::Capture::default();
        let dispatch = logs.dispatch();
        let module = tracing::dispatcher::with_default(&dispatch, || match &self.module {
            Module::Path(path) => PluginModule::load(&runtime, path),
            Module::Bytes(name, bytes) => PluginModule::from_bytes(&runtime, name, bytes),
        })?;
        let plugin = Arc::new(Plugin {
            name: self.name,
            root_id: self.root_id,
            vm_id: self.vm_id,
            configuration: self.configuration,
            vm_configuration: self.vm_configuration,
            failure_policy: self.failure_policy,
            limits: self.limits,
            module,
        });
        let calls: Calls = Rc::new(RefCell::new(VecDeque::new()));
        let made = Rc::new(RefCell::new(Vec::new()));
        let tokens = Rc::new(std::cell::Cell::new(0u32));
        let queued = Arc::new(std::sync::Mutex::new(VecDeque::new()));
        let notify = queued.clone();
        let hooks = VmHooks {
            queue_notifier: Some(Arc::new(move |queue| {
                notify
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push_back(queue);
            })),
            http_caller: Some(caller(calls.clone(), made.clone(), tokens.clone())),
            grpc_caller: Some(grpc_caller(calls.clone(), made.clone(), tokens.clone())),
            grpc_streamer: Some(grpc_streamer(calls.clone(), made.clone(), tokens)),
            on_callback: None,
        };
        let vm = tracing::dispatcher::with_default(&dispatch, || Vm::with_hooks(plugin, hooks))
            .map_err(|error| Error::Start {
                error,
                logs: logs.take(),
            })?;
        Ok(Filter {
            runtime,
            vm,
            logs,
            dispatch,
            calls,
            made,
            queued,
            startup_logs: Vec::new(),
        }
        .with_startup_logs())
    }
}

/// The `proxy_http_call` of the filter under test: recorded, answered
/// later from the test's mocks.
fn caller(
    calls: Calls,
    made: Rc<RefCell<Vec<CallMade>>>,
    tokens: Rc<std::cell::Cell<u32>>,
) -> weft_abi::HttpCaller {
    Rc::new(move |call: HttpCall| {
        let seen = CallMade {
            cluster: call.upstream.clone(),
            headers: text_pairs(&call.headers),
            body: call.body.clone(),
            timeout_ms: millis(call.timeout),
            token: 0,
        };
        Ok(record(&calls, &made, &tokens, seen, Pending::Http(call)))
    })
}

/// Records a call-out as made and waiting for its answer; its token.
fn record(
    calls: &Calls,
    made: &RefCell<Vec<CallMade>>,
    tokens: &std::cell::Cell<u32>,
    seen: CallMade,
    pending: Pending,
) -> u32 {
    let token = tokens.get() + 1;
    tokens.set(token);
    made.borrow_mut().push(CallMade { token, ..seen });
    calls.borrow_mut().push_back((token, pending));
    token
}

fn millis(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)
}

/// The `proxy_grpc_call` of the filter under test: recorded (with
/// `:path` `/SERVICE/METHOD` among its headers), answered later from the
/// test's mocks.
fn grpc_caller(
    calls: Calls,
    made: Rc<RefCell<Vec<CallMade>>>,
    tokens: Rc<std::cell::Cell<u32>>,
) -> weft_abi::GrpcCaller {
    Rc::new(move |call: GrpcCall| {
        let mut headers = vec![(":path".to_string(), grpc_path(&call))];
        headers.extend(text_pairs(&call.metadata));
        let seen = CallMade {
            cluster: call.cluster.clone(),
            headers,
            body: call.message.clone(),
            timeout_ms: millis(call.timeout),
            token: 0,
        };
        Ok(record(&calls, &made, &tokens, seen, Pending::Grpc(call)))
    })
}

/// The `proxy_grpc_stream` of the filter under test: recorded like a
/// call (`:path` /SERVICE/METHOD, the metadata as headers), with the
/// messages the filter sends appended to its body; answered from the
/// test's mocks once the filter waits.
fn grpc_streamer(
    calls: Calls,
    made: Rc<RefCell<Vec<CallMade>>>,
    tokens: Rc<std::cell::Cell<u32>>,
) -> weft_abi::GrpcStreamer {
    Rc::new(move |open: GrpcStreamOpen| {
        let mut headers = vec![(
            ":path".to_string(),
            format!("/{}/{}", open.service, open.method),
        )];
        headers.extend(text_pairs(&open.metadata));
        let seen = CallMade {
            cluster: open.cluster.clone(),
            headers,
            body: Vec::new(),
            timeout_ms: 0,
            token: 0,
        };
        let token = record(&calls, &made, &tokens, seen, Pending::GrpcStream(open));
        let made = made.clone();
        let sender: weft_abi::GrpcStreamSender = Box::new(move |out: GrpcOutbound| {
            if let GrpcOutbound::Message(message) = out
                && let Some(call) = made.borrow_mut().iter_mut().find(|c| c.token == token)
            {
                call.body.extend_from_slice(&message);
            }
            Ok(())
        });
        Ok((token, sender))
    })
}

fn grpc_path(call: &GrpcCall) -> String {
    format!("/{}/{}", call.service, call.method)
}

/// A call-out made and not answered yet.
enum Pending {
    Http(HttpCall),
    Grpc(GrpcCall),
    GrpcStream(GrpcStreamOpen),
}

/// Call-outs made and not answered yet, with their tokens.
type Calls = Rc<RefCell<VecDeque<(u32, Pending)>>>;

/// gRPC's UNAVAILABLE: what a call no mock answers ends with.
const GRPC_UNAVAILABLE: u32 = 14;

/// A filter running on weft's runtime.
pub struct Filter {
    runtime: Arc<Runtime>,
    vm: Vm,
    logs: logs::Capture,
    dispatch: tracing::Dispatch,
    calls: Calls,
    /// Call-outs made during the current request.
    made: Rc<RefCell<Vec<CallMade>>>,
    /// Queues with new items, to tell the filter about
    /// (`proxy_on_queue_ready`).
    queued: Arc<std::sync::Mutex<VecDeque<u32>>>,
    startup_logs: Vec<LogLine>,
}

/// A request to send through the filter, and how the world around it
/// answers.
#[derive(Debug, Clone)]
pub struct Request {
    /// `:method`.
    pub method: String,
    /// `:path`, with the query.
    pub path: String,
    /// `:authority`.
    pub authority: String,
    /// `:scheme`.
    pub scheme: String,
    /// Other headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body (none when empty).
    pub body: Vec<u8>,
    /// Trailers (none when empty).
    pub trailers: Vec<(String, String)>,
    /// Property values the proxy would supply (`source.address`,
    /// `xds.route_name`, `connection.mtls`...), encoded as proxy-wasm hosts
    /// encode them.
    pub properties: BTreeMap<String, Vec<u8>>,
    /// What the upstream answers if the request reaches it.
    pub upstream: Response,
    /// Answers to the filter's call-outs, taken in order by the first
    /// whose cluster (and path, when given) matches. A call no mock
    /// answers fails, as one that timed out would.
    pub callouts: Vec<CalloutMock>,
    /// Timer ticks to deliver while the stream is paused (each one
    /// `proxy_on_tick`; a filter that delays a request continues it from a
    /// tick).
    pub ticks: u32,
    /// Instead of an HTTP request: a TCP connection (the filter's TCP
    /// callbacks run; method, path, headers, body and upstream are not
    /// used).
    pub connection: Option<Connection>,
}

/// A TCP connection through the filter, as a `protocol: tcp` listener
/// relays one: `proxy_on_new_connection`, then each chunk the client sends
/// (`proxy_on_downstream_data`, end of stream with the last), the
/// downstream close, then each chunk the upstream sends back
/// (`proxy_on_upstream_data`), the upstream close, then the end of the
/// context.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// What the client sends, chunk by chunk.
    pub downstream: Vec<Vec<u8>>,
    /// What the upstream sends back, chunk by chunk.
    pub upstream: Vec<Vec<u8>>,
}

/// What a TCP connection relayed each way, after the filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Relayed {
    /// What reached the upstream.
    #[serde(serialize_with = "as_text")]
    pub upstream: Vec<u8>,
    /// What reached the client.
    #[serde(serialize_with = "as_text")]
    pub downstream: Vec<u8>,
}

impl Request {
    /// A request with `method` and `path`, host `example.com`, no body;
    /// the upstream answers 200 with an empty body.
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            authority: "example.com".to_string(),
            scheme: "http".to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            trailers: Vec::new(),
            properties: BTreeMap::new(),
            upstream: Response::new(200),
            callouts: Vec::new(),
            ticks: 10,
            connection: None,
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> Request {
        Request::new("GET", path)
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets what the upstream answers.
    #[must_use]
    pub fn upstream(mut self, response: Response) -> Request {
        self.upstream = response;
        self
    }

    /// Answers call-outs to `cluster` with `response`.
    #[must_use]
    pub fn callout(mut self, cluster: &str, response: Response) -> Request {
        self.callouts.push(CalloutMock {
            cluster: cluster.to_string(),
            path: None,
            response: Some(response),
            grpc_status: None,
            grpc_message: None,
            messages: Vec::new(),
        });
        self
    }

    /// Gives a property a string value.
    #[must_use]
    pub fn property(mut self, path: &str, value: impl Into<Vec<u8>>) -> Request {
        self.properties.insert(path.to_string(), value.into());
        self
    }
}

/// An HTTP response: the upstream's, a call-out's, or what the client got.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers, in order (names lower-case).
    pub headers: Vec<(String, String)>,
    /// The body.
    #[serde(serialize_with = "as_text")]
    pub body: Vec<u8>,
    /// Trailers.
    pub trailers: Vec<(String, String)>,
}

fn as_text<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(bytes))
}

impl Response {
    /// A response with `status`, no headers, no body.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            ..Response::default()
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// Adds a trailer.
    #[must_use]
    pub fn with_trailer(mut self, name: &str, value: &str) -> Response {
        self.trailers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An answer to the filter's call-outs.
#[derive(Debug, Clone, Default)]
pub struct CalloutMock {
    /// The cluster the call goes to.
    pub cluster: String,
    /// The call's `:path`, when it matters.
    pub path: Option<String>,
    /// The answer; `None` makes the call fail (as a timeout or a refused
    /// connection does). For a gRPC call: its headers are the initial
    /// metadata and its body the message.
    pub response: Option<Response>,
    /// For a gRPC call: the status it ends with (default 0, OK) and its
    /// message.
    pub grpc_status: Option<u32>,
    /// For a gRPC call: the `grpc-message`.
    pub grpc_message: Option<String>,
    /// For a gRPC stream: the messages it answers, in order (when empty,
    /// the response body is the one message, unless it is empty too).
    pub messages: Vec<Vec<u8>>,
}

/// A call-out the filter made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CallMade {
    /// The cluster.
    pub cluster: String,
    /// Its headers, with `:method`, `:path`, `:authority`.
    pub headers: Vec<(String, String)>,
    /// Its body.
    #[serde(serialize_with = "as_text")]
    pub body: Vec<u8>,
    /// The timeout it asked for, in milliseconds (0 for a gRPC stream).
    pub timeout_ms: u64,
    /// The token the filter got for it.
    #[serde(skip)]
    pub token: u32,
}

impl CallMade {
    /// The value of header `name` (`:path` and the like included).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

/// The request as the upstream would have received it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UpstreamRequest {
    /// Headers, pseudo-headers (`:method`, `:path`...) first as the filter
    /// left them.
    pub headers: Vec<(String, String)>,
    /// The body.
    #[serde(serialize_with = "as_text")]
    pub body: Vec<u8>,
    /// Trailers.
    pub trailers: Vec<(String, String)>,
}

impl UpstreamRequest {
    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

/// How the request ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It reached the upstream and the answer went back to the client.
    Forwarded,
    /// The filter answered it itself (`proxy_send_local_response`).
    LocalReply,
    /// The filter closed the stream (`proxy_close_stream`): the client got
    /// no answer.
    Closed,
    /// The filter paused it and never continued it, even after the
    /// call-outs were answered and the ticks delivered.
    StillPaused,
    /// A callback failed (trap, timeout); the failure policy decided.
    Failed,
}

/// What happened to one request.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Exchange {
    /// How it ended.
    pub outcome: Outcome,
    /// The request as the upstream received it, if it got that far.
    pub upstream: Option<UpstreamRequest>,
    /// What the client got: the upstream's answer after the response
    /// callbacks, the filter's local reply, or weft's own error response
    /// (503 on a failure with `fail_closed`).
    pub response: Response,
    /// The call-outs the filter made, in order.
    pub callouts: Vec<CallMade>,
    /// What was logged while the request ran.
    pub logs: Vec<LogLine>,
    /// For a TCP connection: what it relayed each way.
    pub relayed: Option<Relayed>,
}

/// Where a paused stream stands after the world had its chance to answer.
enum Resumed {
    Continue,
    Close,
    Paused,
}

impl Filter {
    /// A filter from a `.wasm` (or `.wat`) file.
    pub fn load(path: impl AsRef<Path>) -> FilterBuilder {
        FilterBuilder::with(Module::Path(path.as_ref().to_path_buf()))
    }

    /// A filter from a module's bytes (binary or text).
    pub fn from_bytes(name: &str, bytes: impl Into<Vec<u8>>) -> FilterBuilder {
        FilterBuilder::with(Module::Bytes(name.to_string(), bytes.into()))
    }

    fn with_startup_logs(mut self) -> Filter {
        self.startup_logs = self.logs.take();
        self
    }

    /// What the filter logged while it started (`proxy_on_vm_start`,
    /// `proxy_on_configure`).
    pub fn startup_logs(&self) -> &[LogLine] {
        &self.startup_logs
    }

    /// Runs one request through the filter. A failed callback is an
    /// [`Outcome::Failed`] exchange, not an error.
    pub fn send(&mut self, request: Request) -> Result<Exchange, Error> {
        let dispatch = self.dispatch.clone();
        tracing::dispatcher::with_default(&dispatch, || self.run(request))
    }

    /// Delivers `proxy_on_tick` once (when the filter set a tick period).
    pub fn tick(&mut self) -> Result<Vec<LogLine>, Error> {
        let dispatch = self.dispatch.clone();
        tracing::dispatcher::with_default(&dispatch, || self.vm.on_tick())?;
        Ok(self.logs.take())
    }

    /// Calls the filter's foreign callback `function_id`
    /// (`proxy_on_foreign_function`) with `arguments`, as `POST
    /// /plugins/NAME/foreign/ID` on the proxy's admin endpoint does.
    pub fn foreign_function(
        &mut self,
        function_id: u32,
        arguments: &[u8],
    ) -> Result<Vec<LogLine>, Error> {
        let dispatch = self.dispatch.clone();
        tracing::dispatcher::with_default(&dispatch, || {
            self.vm.on_foreign_function(function_id, arguments.to_vec())
        })?;
        Ok(self.logs.take())
    }

    /// The tick period the filter asked for, if any.
    pub fn tick_period(&self) -> Option<Duration> {
        self.vm.tick_period()
    }

    /// The value of the metric the filter defined as `name` (counters and
    /// gauges; a histogram gives its count).
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.metrics().get(name).copied()
    }

    /// Every metric the filter defined, by name (a histogram by its count).
    pub fn metrics(&self) -> BTreeMap<String, i64> {
        self.runtime
            .metrics()
            .iter()
            .map(|m| {
                let value = match m.read() {
                    MetricValue::Value(v) => v,
                    MetricValue::Histogram { count, .. } => {
                        i64::try_from(count).unwrap_or(i64::MAX)
                    }
                };
                (m.name.clone(), value)
            })
            .collect()
    }

    fn run(&mut self, request: Request) -> Result<Exchange, Error> {
        if let Some(connection) = &request.connection {
            return self.run_tcp(&request, connection);
        }
        let mut mocks = request.callouts.clone();
        let mut stream: Box<dyn HttpStream> = Box::new(MockStream {
            request_headers: request_pairs(&request),
            request_body: request.body.clone(),
            request_trailers: pairs(&request.trailers),
            properties: request.properties.clone().into_iter().collect(),
            ..MockStream::default()
        });
        let context = self.vm.create_stream_context()?;
        let has_body = !request.body.is_empty();
        let has_trailers = !request.trailers.is_empty();
        let header_count = request_pairs(&request).len();

        // The request path: headers, body, trailers.
        let mut steps: Vec<Step> = vec![Step::RequestHeaders(
            header_count,
            !has_body && !has_trailers,
        )];
        if has_body {
            steps.push(Step::RequestBody(request.body.len(), !has_trailers));
        }
        if has_trailers {
            steps.push(Step::RequestTrailers(request.trailers.len()));
        }
        // Failing open, the request goes on without the filter, as in a
        // proxy: to the upstream as the filter left it, and no more of its
        // callbacks.
        let fail_open = self.vm.plugin().failure_policy == FailurePolicy::FailOpen;
        let mut failed = false;
        if let Some(end) = self.run_steps(context, &mut stream, &steps, &request, &mut mocks)? {
            if end != Outcome::Failed || !fail_open {
                return self.finish(context, stream, end, None);
            }
            failed = true;
        }
        let upstream = {
            let s = mock(&mut stream);
            UpstreamRequest {
                headers: text_pairs(&s.request_headers),
                body: s.request_body.clone(),
                trailers: text_pairs(&s.request_trailers),
            }
        };

        // The response path.
        {
            let s = mock(&mut stream);
            s.response_headers = Some(status_and_headers(&request.upstream));
            s.response_body = request.upstream.body.clone();
            s.response_trailers = Some(pairs(&request.upstream.trailers));
        }
        let has_body = !request.upstream.body.is_empty();
        let has_trailers = !request.upstream.trailers.is_empty();
        let mut steps = vec![Step::ResponseHeaders(
            request.upstream.headers.len() + 1,
            !has_body && !has_trailers,
        )];
        if has_body {
            steps.push(Step::ResponseBody(
                request.upstream.body.len(),
                !has_trailers,
            ));
        }
        if has_trailers {
            steps.push(Step::ResponseTrailers(request.upstream.trailers.len()));
        }
        let end = if failed {
            Outcome::Failed
        } else {
            self.run_steps(context, &mut stream, &steps, &request, &mut mocks)?
                .unwrap_or(Outcome::Forwarded)
        };
        self.finish(context, stream, end, Some(upstream))
    }

    /// Runs callbacks in order; `Some(outcome)` when the stream ended
    /// before the last.
    fn run_steps(
        &mut self,
        context: u32,
        stream: &mut Box<dyn HttpStream>,
        steps: &[Step],
        request: &Request,
        mocks: &mut Vec<CalloutMock>,
    ) -> Result<Option<Outcome>, Error> {
        for step in steps {
            let action = match *step {
                Step::RequestHeaders(n, eos) => self.vm.on_request_headers(context, stream, n, eos),
                Step::RequestBody(n, eos) => self.vm.on_body(true, context, stream, n, eos),
                Step::RequestTrailers(n) => self.vm.on_trailers(true, context, stream, n),
                Step::ResponseHeaders(n, eos) => {
                    self.vm.on_response_headers(context, stream, n, eos)
                }
                Step::ResponseBody(n, eos) => self.vm.on_body(false, context, stream, n, eos),
                Step::ResponseTrailers(n) => self.vm.on_trailers(false, context, stream, n),
            };
            let action = match action {
                Ok(action) => action,
                Err(_) => return Ok(Some(Outcome::Failed)),
            };
            if mock(stream).local.is_some() {
                return Ok(Some(Outcome::LocalReply));
            }
            if action == Action::Pause {
                match self.resume(context, stream, request, mocks)? {
                    Resumed::Continue => {}
                    Resumed::Close => return Ok(Some(Outcome::Closed)),
                    Resumed::Paused => return Ok(Some(Outcome::StillPaused)),
                }
                if mock(stream).local.is_some() {
                    return Ok(Some(Outcome::LocalReply));
                }
            }
        }
        Ok(None)
    }

    /// A paused stream: answers its call-outs from the mocks, then
    /// delivers ticks, until the filter continues or closes it.
    fn resume(
        &mut self,
        context: u32,
        stream: &mut Box<dyn HttpStream>,
        request: &Request,
        mocks: &mut Vec<CalloutMock>,
    ) -> Result<Resumed, Error> {
        let mut ticks = request.ticks;
        // A filter that answers every event with another one is paused
        // for good.
        for _ in 0..10_000 {
            let ready = self.next_queue();
            // A call-out answer waits while a queue notification goes first.
            let pending = if ready.is_none() {
                self.calls.borrow_mut().pop_front()
            } else {
                None
            };
            let lent = std::mem::replace(stream, Box::new(weft_abi::NoStream));
            self.vm.lend_streams(vec![(context, lent)]);
            let result = match (pending, ready) {
                (_, Some(queue)) => self.vm.on_queue_ready(queue),
                (Some((token, Pending::Grpc(call))), None) => {
                    let answer = match take_mock(mocks, &call.cluster, &grpc_path(&call)) {
                        Some(CalloutMock {
                            response: Some(r),
                            grpc_status,
                            grpc_message,
                            ..
                        }) => GrpcCallResponse {
                            status: grpc_status.unwrap_or(0),
                            status_message: grpc_message,
                            initial_metadata: pairs(&r.headers),
                            message: r.body,
                            trailing_metadata: pairs(&r.trailers),
                        },
                        _ => GrpcCallResponse {
                            status: GRPC_UNAVAILABLE,
                            status_message: Some("no answer".into()),
                            ..GrpcCallResponse::default()
                        },
                    };
                    self.vm.on_grpc_call_response(token, answer)
                }
                (Some((token, Pending::GrpcStream(open))), None) => {
                    let path = format!("/{}/{}", open.service, open.method);
                    let mock = take_mock(mocks, &open.cluster, &path);
                    let mut result = Ok(());
                    for event in stream_events(mock) {
                        result = self.vm.on_grpc_stream(token, event);
                        if result.is_err() {
                            break;
                        }
                    }
                    result
                }
                (Some((token, Pending::Http(call))), None) => {
                    let path = call
                        .headers
                        .iter()
                        .find(|(k, _)| k == b":path")
                        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default();
                    let answer = take_mock(mocks, &call.upstream, &path)
                        .and_then(|m| m.response)
                        .map(|r| HttpCallResponse {
                            headers: status_and_headers(&r),
                            body: r.body,
                            trailers: pairs(&r.trailers),
                        });
                    self.vm.on_http_call_response(token, answer)
                }
                (None, None) if ticks > 0 && self.vm.tick_period().is_some() => {
                    // Ticks come at the period the filter asked for: a
                    // filter that waits for time to pass sees it pass.
                    ticks -= 1;
                    if let Some(period) = self.vm.tick_period() {
                        std::thread::sleep(period.min(Duration::from_secs(1)));
                    }
                    self.vm.on_tick()
                }
                (None, None) => {
                    if let Some((_, back)) = self.vm.take_lent_streams().pop() {
                        *stream = back;
                    }
                    return Ok(Resumed::Paused);
                }
            };
            if let Some((_, back)) = self.vm.take_lent_streams().pop() {
                *stream = back;
            }
            let actions = self.vm.take_stream_actions();
            if result.is_err() {
                return Ok(Resumed::Paused);
            }
            if mock(stream).local.is_some() {
                return Ok(Resumed::Continue);
            }
            for (ctx, action) in actions {
                if ctx == context {
                    return Ok(match action {
                        StreamAction::Continue(_) => Resumed::Continue,
                        StreamAction::Close(_) => Resumed::Close,
                    });
                }
            }
        }
        Ok(Resumed::Paused)
    }

    /// A queue with new items the filter was not told about yet.
    fn next_queue(&self) -> Option<u32> {
        self.queued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front()
    }

    /// Ends the stream's context and assembles the exchange.
    fn finish(
        &mut self,
        context: u32,
        mut stream: Box<dyn HttpStream>,
        outcome: Outcome,
        upstream: Option<UpstreamRequest>,
    ) -> Result<Exchange, Error> {
        let local = mock(&mut stream).local.take();
        // Failing open past the upstream, the client gets its answer as far
        // as the filter had changed it.
        let answered = outcome == Outcome::Forwarded
            || (outcome == Outcome::Failed
                && upstream.is_some()
                && self.vm.plugin().failure_policy == FailurePolicy::FailOpen);
        let response = match (&outcome, local) {
            (_, Some(local)) => Response {
                status: u16::try_from(local.status).unwrap_or(500),
                headers: text_pairs(&local.headers),
                body: local.body,
                trailers: Vec::new(),
            },
            (_, None) if answered => {
                let s = mock(&mut stream);
                let headers = s.response_headers.clone().unwrap_or_default();
                let status = headers
                    .iter()
                    .find(|(k, _)| k == b":status")
                    .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
                    .unwrap_or(200);
                Response {
                    status,
                    headers: text_pairs(&headers)
                        .into_iter()
                        .filter(|(k, _)| !k.starts_with(':'))
                        .collect(),
                    body: s.response_body.clone(),
                    trailers: text_pairs(&s.response_trailers.clone().unwrap_or_default()),
                }
            }
            (Outcome::Failed, None) => Response::new(503),
            (Outcome::StillPaused, None) => Response::new(500),
            (_, None) => Response::new(0),
        };
        if !self.vm.is_failed() {
            let _ = self.vm.finish_stream(context, &mut stream);
        }
        // Queue notifications still due arrive after the request, as they
        // would on a proxy's event loop.
        for _ in 0..1_000 {
            match self.next_queue() {
                Some(queue) if self.vm.on_queue_ready(queue).is_ok() => {}
                _ => break,
            }
        }
        self.calls.borrow_mut().clear();
        Ok(Exchange {
            outcome,
            upstream,
            response,
            callouts: std::mem::take(&mut *self.made.borrow_mut()),
            logs: self.logs.take(),
            relayed: None,
        })
    }

    /// A TCP connection through the filter (see [`Connection`]).
    fn run_tcp(&mut self, request: &Request, connection: &Connection) -> Result<Exchange, Error> {
        let mut mocks = request.callouts.clone();
        let mut stream: Box<dyn HttpStream> = Box::new(MockStream {
            tcp: true,
            properties: request.properties.clone().into_iter().collect(),
            ..MockStream::default()
        });
        let context = self.vm.create_stream_context()?;
        let mut relayed = Relayed::default();
        let outcome = self.relay(
            context,
            &mut stream,
            request,
            connection,
            &mut mocks,
            &mut relayed,
        )?;
        if outcome == Outcome::Closed {
            for downstream in [true, false] {
                let _ =
                    self.vm
                        .on_connection_close(downstream, context, &mut stream, PeerType::Local);
            }
        }
        let mut exchange = self.finish(context, stream, outcome, None)?;
        exchange.response = Response::default();
        exchange.relayed = Some(relayed);
        Ok(exchange)
    }

    /// The new connection, then each direction's data and close.
    fn relay(
        &mut self,
        context: u32,
        stream: &mut Box<dyn HttpStream>,
        request: &Request,
        connection: &Connection,
        mocks: &mut Vec<CalloutMock>,
        relayed: &mut Relayed,
    ) -> Result<Outcome, Error> {
        let step = self.vm.on_new_connection(context, stream);
        match self.tcp_outcome(context, stream, request, mocks, step)? {
            TcpStep::Go => {}
            TcpStep::Held => return Ok(Outcome::StillPaused),
            TcpStep::End(end) => return Ok(end),
        }
        for (downstream, chunks) in [
            (true, &connection.downstream),
            (false, &connection.upstream),
        ] {
            let count = chunks.len().max(1);
            let mut held = false;
            for i in 0..count {
                let chunk = chunks.get(i).map(Vec::as_slice).unwrap_or_default();
                let data = mock(stream).data(downstream);
                data.extend_from_slice(chunk);
                let size = data.len();
                let step = self
                    .vm
                    .on_tcp_data(downstream, context, stream, size, i + 1 == count);
                match self.tcp_outcome(context, stream, request, mocks, step)? {
                    TcpStep::Go => {
                        let data = std::mem::take(mock(stream).data(downstream));
                        let to = if downstream {
                            &mut relayed.upstream
                        } else {
                            &mut relayed.downstream
                        };
                        to.extend_from_slice(&data);
                        held = false;
                    }
                    TcpStep::Held => held = true,
                    TcpStep::End(end) => return Ok(end),
                }
            }
            if held {
                return Ok(Outcome::StillPaused);
            }
            let closed = self
                .vm
                .on_connection_close(downstream, context, stream, PeerType::Remote);
            if closed.is_err() {
                return Ok(Outcome::Failed);
            }
        }
        Ok(Outcome::Forwarded)
    }

    /// What a TCP callback's answer means: go on, hold the data (a pause
    /// the world's events did not end), or end the connection.
    fn tcp_outcome(
        &mut self,
        context: u32,
        stream: &mut Box<dyn HttpStream>,
        request: &Request,
        mocks: &mut Vec<CalloutMock>,
        step: Result<(Action, Vec<StreamAction>), VmError>,
    ) -> Result<TcpStep, Error> {
        let Ok((action, asked)) = step else {
            return Ok(TcpStep::End(Outcome::Failed));
        };
        if asked.iter().any(|a| matches!(a, StreamAction::Close(_))) {
            return Ok(TcpStep::End(Outcome::Closed));
        }
        if action == Action::Continue {
            return Ok(TcpStep::Go);
        }
        Ok(match self.resume(context, stream, request, mocks)? {
            Resumed::Continue => TcpStep::Go,
            Resumed::Close => TcpStep::End(Outcome::Closed),
            Resumed::Paused => TcpStep::Held,
        })
    }
}

/// Where a TCP connection stands after a callback.
enum TcpStep {
    Go,
    Held,
    End(Outcome),
}

impl FilterBuilder {
    fn with(module: Module) -> FilterBuilder {
        FilterBuilder {
            module,
            name: "filter".to_string(),
            root_id: String::new(),
            vm_id: String::new(),
            configuration: Vec::new(),
            vm_configuration: Vec::new(),
            limits: PluginLimits::default(),
            failure_policy: FailurePolicy::FailClosed,
        }
    }
}

#[derive(Clone, Copy)]
enum Step {
    RequestHeaders(usize, bool),
    RequestBody(usize, bool),
    RequestTrailers(usize),
    ResponseHeaders(usize, bool),
    ResponseBody(usize, bool),
    ResponseTrailers(usize),
}

fn mock(stream: &mut Box<dyn HttpStream>) -> &mut MockStream {
    let any: &mut dyn std::any::Any = stream.as_mut();
    match any.downcast_mut::<MockStream>() {
        Some(s) => s,
        None => unreachable_stream(),
    }
}

#[allow(clippy::panic)]
fn unreachable_stream() -> ! {
    panic!("the harness only ever lends its own stream")
}

fn pairs(list: &[(String, String)]) -> Pairs {
    list.iter()
        .map(|(k, v)| (k.to_ascii_lowercase().into_bytes(), v.clone().into_bytes()))
        .collect()
}

/// A response's headers as the host serves them: `:status` first.
fn status_and_headers(response: &Response) -> Pairs {
    let mut all = vec![(
        b":status".to_vec(),
        response.status.to_string().into_bytes(),
    )];
    all.extend(pairs(&response.headers));
    all
}

fn text_pairs(list: &Pairs) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

fn request_pairs(request: &Request) -> Pairs {
    let mut all = vec![
        (b":method".to_vec(), request.method.clone().into_bytes()),
        (b":path".to_vec(), request.path.clone().into_bytes()),
        (
            b":authority".to_vec(),
            request.authority.clone().into_bytes(),
        ),
        (b":scheme".to_vec(), request.scheme.clone().into_bytes()),
    ];
    all.extend(pairs(&request.headers));
    all
}

/// The first mock for a call to `cluster` at `path`, taken.
/// What a mocked gRPC stream answers: its initial metadata, messages and
/// trailing metadata, then its status; UNAVAILABLE when no mock answers.
fn stream_events(mock: Option<CalloutMock>) -> Vec<GrpcInbound> {
    let Some(CalloutMock {
        response: Some(r),
        grpc_status,
        grpc_message,
        messages,
        ..
    }) = mock
    else {
        return vec![GrpcInbound::Close {
            status: GRPC_UNAVAILABLE,
            message: Some("no answer".into()),
        }];
    };
    let mut events = Vec::new();
    if !r.headers.is_empty() {
        events.push(GrpcInbound::InitialMetadata(pairs(&r.headers)));
    }
    let messages = match (messages.is_empty(), r.body.is_empty()) {
        (true, false) => vec![r.body],
        _ => messages,
    };
    events.extend(messages.into_iter().map(GrpcInbound::Message));
    if !r.trailers.is_empty() {
        events.push(GrpcInbound::TrailingMetadata(pairs(&r.trailers)));
    }
    events.push(GrpcInbound::Close {
        status: grpc_status.unwrap_or(0),
        message: grpc_message,
    });
    events
}

fn take_mock(mocks: &mut Vec<CalloutMock>, cluster: &str, path: &str) -> Option<CalloutMock> {
    let index = mocks
        .iter()
        .position(|m| m.cluster == cluster && m.path.as_ref().is_none_or(|p| p == path))?;
    Some(mocks.remove(index))
}
