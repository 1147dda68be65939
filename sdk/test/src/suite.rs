//! Filter tests written in YAML, as `weft filter test` runs them.
//!
//! ```yaml
//! filter: ../../target/filters/hello.wasm   # or given on the command line
//! plugin:
//!   configuration: {header: x-hello, value: world}   # JSON text for on_configure
//! tests:
//!   - name: adds the header
//!     request: {method: GET, path: /, headers: {x-user: alice}}
//!     upstream: {status: 200, body: ok}
//!     expect:
//!       upstream: {headers: {x-user: alice}}
//!       response: {status: 200, headers: {x-hello: world, x-secret: null}}
//!       logs: ["GET /"]
//!       metrics: {hello_requests: 1}
//! ```
//!
//! Every test runs on the same VM, in order: state the filter keeps
//! (shared data, metrics, its own memory) carries from one to the next, as
//! it does in a proxy (so `--only` runs a shorter history: counts that
//! build up over the file differ). Only what `expect` names is checked; a
//! header expected as `null` must be absent, one listed in `present` must
//! be there with any value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{CalloutMock, Error, Exchange, Filter, FilterBuilder, Outcome, Request, Response};

/// A test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// The module, relative to the file (the command line may give it
    /// instead).
    #[serde(default)]
    pub filter: Option<PathBuf>,
    /// How the plugin is configured.
    #[serde(default)]
    pub plugin: PluginSpec,
    /// The tests, run in order on one VM.
    pub tests: Vec<TestSpec>,
    /// The file's directory, for relative paths.
    #[serde(skip)]
    pub dir: PathBuf,
}

/// The plugin's configuration, as in a proxy config's `plugins` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// `plugin_name`; default `filter`.
    #[serde(default)]
    pub name: Option<String>,
    /// `plugin_root_id`.
    #[serde(default)]
    pub root_id: Option<String>,
    /// `plugin_vm_id`.
    #[serde(default)]
    pub vm_id: Option<String>,
    /// What `proxy_on_configure` reads: a string as it is, anything else
    /// as JSON.
    #[serde(default)]
    pub configuration: Option<serde_yaml::Value>,
    /// What `proxy_on_vm_start` reads, likewise.
    #[serde(default)]
    pub vm_configuration: Option<serde_yaml::Value>,
    /// Skip the filter when a callback fails (`fail_open`), instead of
    /// answering 503.
    #[serde(default)]
    pub fail_open: bool,
}

/// One test: a request, how the world answers, what must be seen.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSpec {
    /// What it checks, in a few words.
    pub name: String,
    /// The request; default `GET /`.
    #[serde(default)]
    pub request: RequestSpec,
    /// A TCP connection instead of a request (only `request.properties`
    /// is used then).
    #[serde(default)]
    pub connection: Option<ConnectionSpec>,
    /// What the upstream answers; default 200 with no body.
    #[serde(default)]
    pub upstream: Option<ResponseSpec>,
    /// Answers to call-outs, taken in order by the first that matches.
    #[serde(default)]
    pub callouts: Vec<CalloutSpec>,
    /// Timer ticks delivered while the stream is paused; default 10.
    #[serde(default)]
    pub ticks: Option<u32>,
    /// `proxy_on_tick`s delivered before the request.
    #[serde(default)]
    pub ticks_before: u32,
    /// Foreign callbacks (`proxy_on_foreign_function`) called before the
    /// request, in order.
    #[serde(default)]
    pub foreign_before: Vec<ForeignSpec>,
    /// What must be seen.
    #[serde(default)]
    pub expect: Expect,
}

/// A TCP connection: what each side sends, chunk by chunk.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    /// What the client sends.
    #[serde(default)]
    pub downstream: Vec<String>,
    /// What the upstream sends back.
    #[serde(default)]
    pub upstream: Vec<String>,
}

/// What a TCP connection relayed, each way.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayedSpec {
    /// All that reached the upstream.
    #[serde(default)]
    pub upstream: Option<String>,
    /// All that reached the client.
    #[serde(default)]
    pub downstream: Option<String>,
}

/// A call of the filter's foreign callback.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForeignSpec {
    /// The function id.
    pub id: u32,
    /// Its arguments.
    #[serde(default)]
    pub arguments: String,
}

/// A request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// Default `GET`.
    #[serde(default)]
    pub method: Option<String>,
    /// Default `/`.
    #[serde(default)]
    pub path: Option<String>,
    /// Default `example.com`.
    #[serde(default)]
    pub authority: Option<String>,
    /// Default `http`.
    #[serde(default)]
    pub scheme: Option<String>,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body.
    #[serde(default)]
    pub body: String,
    /// Trailers.
    #[serde(default)]
    pub trailers: BTreeMap<String, String>,
    /// Properties the proxy would supply: strings as bytes, integers as 8
    /// little-endian bytes, booleans as one byte.
    #[serde(default)]
    pub properties: BTreeMap<String, serde_yaml::Value>,
}

/// A response (upstream's or a call-out's).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseSpec {
    /// Default 200.
    #[serde(default)]
    pub status: Option<u16>,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body.
    #[serde(default)]
    pub body: String,
    /// Trailers.
    #[serde(default)]
    pub trailers: BTreeMap<String, String>,
}

/// An answer to call-outs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalloutSpec {
    /// The cluster called.
    pub cluster: String,
    /// The call's `:path`, when it matters.
    #[serde(default)]
    pub path: Option<String>,
    /// The call fails (no answer) instead.
    #[serde(default)]
    pub fail: bool,
    /// A gRPC call's status (default 0, OK); its `headers` are the
    /// initial metadata and `body` the message.
    #[serde(default)]
    pub grpc_status: Option<u32>,
    /// A gRPC call's `grpc-message`.
    #[serde(default)]
    pub grpc_message: Option<String>,
    /// A gRPC stream's answer messages, in order (default: `body` as the
    /// one message, when not empty).
    #[serde(default)]
    pub messages: Vec<String>,
    /// Default 200.
    #[serde(default)]
    pub status: Option<u16>,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body.
    #[serde(default)]
    pub body: String,
    /// Trailers (a gRPC call's trailing metadata).
    #[serde(default)]
    pub trailers: BTreeMap<String, String>,
}

/// What a test checks. Everything is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `forwarded`, `local_reply`, `closed`, `still_paused` or `failed`.
    #[serde(default)]
    pub outcome: Option<Outcome>,
    /// The request as the upstream got it.
    #[serde(default)]
    pub upstream: Option<Seen>,
    /// What the client got.
    #[serde(default)]
    pub response: Option<SeenResponse>,
    /// The call-outs made, in order (all of them).
    #[serde(default)]
    pub callouts: Option<Vec<SeenCallout>>,
    /// For a TCP connection: what it relayed.
    #[serde(default)]
    pub relayed: Option<RelayedSpec>,
    /// Each must appear in some line logged during the request; one
    /// written `[LEVEL] text` must also be logged at that level (`trace`,
    /// `debug`, `info`, `warn`, `error`; proxy-wasm's critical is `error`).
    #[serde(default)]
    pub logs: Vec<String>,
    /// None may appear in any line logged during the request.
    #[serde(default)]
    pub no_logs: Vec<String>,
    /// Metric values after the request.
    #[serde(default)]
    pub metrics: BTreeMap<String, i64>,
}

/// Expected headers and body of a request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seen {
    /// Values by name; `null`: absent.
    #[serde(default)]
    pub headers: BTreeMap<String, Option<String>>,
    /// Headers that must be there, whatever their value.
    #[serde(default)]
    pub present: Vec<String>,
    /// The whole body.
    #[serde(default)]
    pub body: Option<String>,
}

/// Expected response.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenResponse {
    /// Status.
    #[serde(default)]
    pub status: Option<u16>,
    /// Values by name; `null`: absent.
    #[serde(default)]
    pub headers: BTreeMap<String, Option<String>>,
    /// Headers that must be there, whatever their value.
    #[serde(default)]
    pub present: Vec<String>,
    /// The whole body.
    #[serde(default)]
    pub body: Option<String>,
    /// A part of the body.
    #[serde(default)]
    pub body_contains: Option<String>,
}

/// An expected call-out.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenCallout {
    /// The cluster.
    pub cluster: String,
    /// Header values (`:path`, `:method` included); `null`: absent.
    #[serde(default)]
    pub headers: BTreeMap<String, Option<String>>,
    /// The whole body.
    #[serde(default)]
    pub body: Option<String>,
}

/// How one test went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TestResult {
    /// The test's name.
    pub name: String,
    /// What did not match, one line each (empty: passed).
    pub failures: Vec<String>,
    /// What happened, for reports.
    pub exchange: Option<Exchange>,
}

impl TestResult {
    /// Whether it passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl Suite {
    /// Reads a test file.
    pub fn read(path: &Path) -> Result<Suite, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Suite(format!("{}: {e}", path.display())))?;
        let mut suite: Suite = weft_config::from_yaml(&text).map_err(|e| {
            Error::Suite(format!(
                "{}: field `{}`: {}",
                path.display(),
                e.path(),
                e.inner()
            ))
        })?;
        if suite.tests.is_empty() {
            return Err(Error::Suite(format!("{}: no tests", path.display())));
        }
        suite.dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok(suite)
    }

    /// The module to test: `module` if given, else the file's `filter`.
    pub fn module(&self, module: Option<&Path>) -> Result<PathBuf, Error> {
        match (module, &self.filter) {
            (Some(module), _) => Ok(module.to_path_buf()),
            (None, Some(filter)) => Ok(self.dir.join(filter)),
            (None, None) => Err(Error::Suite(
                "no filter: give the module on the command line or `filter:` in the file".into(),
            )),
        }
    }

    /// Starts the filter as the file configures it.
    pub fn start(&self, module: &Path) -> Result<Filter, Error> {
        self.configure(Filter::load(module))?.start()
    }

    /// Gives `builder` the file's plugin configuration.
    pub fn configure(&self, builder: FilterBuilder) -> Result<FilterBuilder, Error> {
        let p = &self.plugin;
        let mut builder = builder.fail_open(p.fail_open);
        if let Some(name) = &p.name {
            builder = builder.name(name);
        }
        if let Some(root_id) = &p.root_id {
            builder = builder.root_id(root_id);
        }
        if let Some(vm_id) = &p.vm_id {
            builder = builder.vm_id(vm_id);
        }
        if let Some(configuration) = &p.configuration {
            builder = builder.configuration(bytes_of(configuration)?);
        }
        if let Some(configuration) = &p.vm_configuration {
            builder = builder.vm_configuration(bytes_of(configuration)?);
        }
        Ok(builder)
    }

    /// Runs every test (or those whose name contains `only`) on `filter`.
    pub fn run(&self, filter: &mut Filter, only: Option<&str>) -> Result<Vec<TestResult>, Error> {
        let mut results = Vec::new();
        for test in &self.tests {
            if only.is_some_and(|o| !test.name.contains(o)) {
                continue;
            }
            for _ in 0..test.ticks_before {
                filter.tick()?;
            }
            for call in &test.foreign_before {
                filter.foreign_function(call.id, call.arguments.as_bytes())?;
            }
            let exchange = filter.send(test.to_request()?)?;
            let failures = test.expect.check(&exchange, filter);
            results.push(TestResult {
                name: test.name.clone(),
                failures,
                exchange: Some(exchange),
            });
        }
        Ok(results)
    }
}

/// A configuration as bytes: a string as it is, anything else as JSON.
fn bytes_of(value: &serde_yaml::Value) -> Result<Vec<u8>, Error> {
    match value {
        serde_yaml::Value::String(text) => Ok(text.clone().into_bytes()),
        other => serde_json::to_vec(other)
            .map_err(|e| Error::Suite(format!("configuration is not JSON: {e}"))),
    }
}

/// A property value encoded as proxy-wasm hosts encode it.
fn property_bytes(value: &serde_yaml::Value) -> Result<Vec<u8>, Error> {
    match value {
        serde_yaml::Value::String(text) => Ok(text.clone().into_bytes()),
        serde_yaml::Value::Bool(b) => Ok(vec![u8::from(*b)]),
        serde_yaml::Value::Number(n) => n
            .as_i64()
            .map(|n| n.to_le_bytes().to_vec())
            .ok_or_else(|| Error::Suite(format!("property value {n}: give an integer"))),
        other => Err(Error::Suite(format!(
            "property value {other:?}: give a string, an integer or a boolean"
        ))),
    }
}

fn list(map: &BTreeMap<String, String>) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect()
}

impl ResponseSpec {
    fn response(&self) -> Response {
        Response {
            status: self.status.unwrap_or(200),
            headers: list(&self.headers),
            body: self.body.clone().into_bytes(),
            trailers: list(&self.trailers),
        }
    }
}

impl TestSpec {
    /// The request this test sends, with the world's answers.
    pub fn to_request(&self) -> Result<Request, Error> {
        let r = &self.request;
        let mut request = Request::new(
            r.method.as_deref().unwrap_or("GET"),
            r.path.as_deref().unwrap_or("/"),
        );
        if let Some(authority) = &r.authority {
            request.authority = authority.clone();
        }
        if let Some(scheme) = &r.scheme {
            request.scheme = scheme.clone();
        }
        request.headers = list(&r.headers);
        request.body = r.body.clone().into_bytes();
        request.trailers = list(&r.trailers);
        for (path, value) in &r.properties {
            request
                .properties
                .insert(path.clone(), property_bytes(value)?);
        }
        if let Some(upstream) = &self.upstream {
            request.upstream = upstream.response();
        }
        request.callouts = self
            .callouts
            .iter()
            .map(|c| CalloutMock {
                cluster: c.cluster.clone(),
                path: c.path.clone(),
                response: (!c.fail).then(|| Response {
                    status: c.status.unwrap_or(200),
                    headers: list(&c.headers),
                    body: c.body.clone().into_bytes(),
                    trailers: list(&c.trailers),
                }),
                grpc_status: c.grpc_status,
                grpc_message: c.grpc_message.clone(),
                messages: c.messages.iter().map(|m| m.clone().into_bytes()).collect(),
            })
            .collect();
        if let Some(ticks) = self.ticks {
            request.ticks = ticks;
        }
        request.connection = self.connection.as_ref().map(|c| crate::Connection {
            downstream: c
                .downstream
                .iter()
                .map(|d| d.clone().into_bytes())
                .collect(),
            upstream: c.upstream.iter().map(|u| u.clone().into_bytes()).collect(),
        });
        Ok(request)
    }
}

/// `expected X, got Y` for one field.
fn differ(field: &str, expected: impl std::fmt::Debug, got: impl std::fmt::Debug) -> String {
    format!("{field}: expected {expected:?}, got {got:?}")
}

/// Checks that headers are there.
fn check_present(
    what: &str,
    names: &[String],
    get: impl Fn(&str) -> Option<String>,
    failures: &mut Vec<String>,
) {
    for name in names {
        if get(name).is_none() {
            failures.push(format!("{what} header {name}: expected it, got (absent)"));
        }
    }
}

/// Checks header expectations against a lookup.
fn check_headers(
    what: &str,
    expected: &BTreeMap<String, Option<String>>,
    get: impl Fn(&str) -> Option<String>,
    failures: &mut Vec<String>,
) {
    for (name, want) in expected {
        let got = get(name);
        if &got != want {
            let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
            failures.push(format!(
                "{what} header {name}: expected {:?}, got {:?}",
                show(want),
                show(&got)
            ));
        }
    }
}

fn outcome_name(outcome: &Outcome) -> String {
    serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl Expect {
    /// Every mismatch between this and what happened.
    pub fn check(&self, exchange: &Exchange, filter: &Filter) -> Vec<String> {
        self.check_with(exchange, &|name| filter.metric(name))
    }

    /// [`Expect::check`] with metric values from `metric`.
    pub fn check_with(
        &self,
        exchange: &Exchange,
        metric: &dyn Fn(&str) -> Option<i64>,
    ) -> Vec<String> {
        let mut failures = Vec::new();
        if let Some(outcome) = &self.outcome
            && *outcome != exchange.outcome
        {
            failures.push(format!(
                "outcome: expected {}, got {}",
                outcome_name(outcome),
                outcome_name(&exchange.outcome)
            ));
        }
        if let Some(want) = &self.relayed {
            let got = exchange.relayed.clone().unwrap_or_default();
            for (side, want, got) in [
                ("upstream", &want.upstream, &got.upstream),
                ("downstream", &want.downstream, &got.downstream),
            ] {
                let got = String::from_utf8_lossy(got);
                if let Some(want) = want
                    && *want != got
                {
                    failures.push(differ(&format!("relayed to the {side}"), want, &got));
                }
            }
        }
        if let Some(seen) = &self.upstream {
            match &exchange.upstream {
                None => failures.push(format!(
                    "upstream: expected the request to reach it, but it ended as {}",
                    outcome_name(&exchange.outcome)
                )),
                Some(upstream) => {
                    check_headers(
                        "upstream",
                        &seen.headers,
                        |n| upstream.header(n),
                        &mut failures,
                    );
                    check_present(
                        "upstream",
                        &seen.present,
                        |n| upstream.header(n),
                        &mut failures,
                    );
                    if let Some(body) = &seen.body {
                        let got = String::from_utf8_lossy(&upstream.body);
                        if *body != got {
                            failures.push(differ("upstream body", body, got));
                        }
                    }
                }
            }
        }
        if let Some(seen) = &self.response {
            let response = &exchange.response;
            if let Some(status) = seen.status
                && status != response.status
            {
                failures.push(differ("response status", status, response.status));
            }
            check_headers(
                "response",
                &seen.headers,
                |n| response.header(n),
                &mut failures,
            );
            check_present(
                "response",
                &seen.present,
                |n| response.header(n),
                &mut failures,
            );
            let got = response.text();
            if let Some(body) = &seen.body
                && *body != got
            {
                failures.push(differ("response body", body, &got));
            }
            if let Some(part) = &seen.body_contains
                && !got.contains(part.as_str())
            {
                failures.push(format!(
                    "response body: expected it to contain {part:?}, got {got:?}"
                ));
            }
        }
        if let Some(callouts) = &self.callouts {
            if callouts.len() != exchange.callouts.len() {
                failures.push(format!(
                    "call-outs: expected {}, got {}: {}",
                    callouts.len(),
                    exchange.callouts.len(),
                    exchange
                        .callouts
                        .iter()
                        .map(|c| format!("{} {}", c.cluster, c.header(":path").unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            for (i, (want, got)) in callouts.iter().zip(&exchange.callouts).enumerate() {
                if want.cluster != got.cluster {
                    failures.push(differ(
                        &format!("call-out {i} cluster"),
                        &want.cluster,
                        &got.cluster,
                    ));
                }
                check_headers(
                    &format!("call-out {i}"),
                    &want.headers,
                    |n| got.header(n),
                    &mut failures,
                );
                if let Some(body) = &want.body {
                    let got = String::from_utf8_lossy(&got.body);
                    if *body != got {
                        failures.push(differ(&format!("call-out {i} body"), body, got));
                    }
                }
            }
        }
        let logged = |part: &str| {
            let (level, text) = match part.strip_prefix('[').and_then(|p| p.split_once("] ")) {
                Some((level, text)) => (Some(level), text),
                None => (None, part),
            };
            exchange
                .logs
                .iter()
                .any(|l| l.message.contains(text) && level.is_none_or(|want| l.level == want))
        };
        let lines = || {
            if exchange.logs.is_empty() {
                "nothing was logged".to_string()
            } else {
                let shown: Vec<String> =
                    exchange.logs.iter().map(|l| format!("      {l}")).collect();
                format!("the lines were:\n{}", shown.join("\n"))
            }
        };
        for part in &self.logs {
            if !logged(part) {
                failures.push(format!(
                    "logs: expected a line containing {part:?}; {}",
                    lines()
                ));
            }
        }
        for part in &self.no_logs {
            if logged(part) {
                failures.push(format!(
                    "logs: expected no line containing {part:?}; {}",
                    lines()
                ));
            }
        }
        for (name, want) in &self.metrics {
            let got = metric(name);
            if got != Some(*want) {
                failures.push(format!(
                    "metric {name}: expected {want}, got {}",
                    got.map_or_else(|| "(not defined)".to_string(), |v| v.to_string())
                ));
            }
        }
        failures
    }
}

/// The text report: a line per test, the differences under each failure,
/// a count at the end.
pub fn report(file: &Path, results: &[TestResult]) -> String {
    let mut out = String::new();
    for result in results {
        if result.passed() {
            out.push_str(&format!("ok   {}\n", result.name));
        } else {
            out.push_str(&format!("FAIL {}\n", result.name));
            for failure in &result.failures {
                out.push_str(&format!("     {failure}\n"));
            }
        }
    }
    let failed = results.iter().filter(|r| !r.passed()).count();
    out.push_str(&format!(
        "{}: {} passed, {failed} failed\n",
        file.display(),
        results.len() - failed
    ));
    out
}
