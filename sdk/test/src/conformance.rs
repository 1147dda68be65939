//! The proxy-wasm conformance suite: data-driven cases, grouped by ABI
//! area, each naming the spec section it checks, the host functions and
//! callbacks it covers, a guest module and a scripted exchange with the
//! expected outcome (the filter-test schema of [`crate::suite`]).
//!
//! ```yaml
//! # conformance/cases/headers.yaml
//! area: headers
//! cases:
//!   - id: headers.add-response-header
//!     spec: "HTTP fields: proxy_add_header_map_value"
//!     covers: [proxy_add_header_map_value, proxy_on_response_headers]
//!     abi: 0.2.1                   # the version the guest exports; default 0.2.1
//!     wat: |                        # the guest's own functions and data
//!       (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
//!         (drop (call $proxy_add_header_map_value
//!           (i32.const 2) (i32.const 100) (i32.const 5) (i32.const 200) (i32.const 3)))
//!         (i32.const 0))
//!       (data (i32.const 100) "x-add")
//!       (data (i32.const 200) "yes")
//!     tests:
//!       - name: the header reaches the client
//!         expect: {response: {headers: {x-add: "yes"}}}
//! ```
//!
//! A `wat` guest is wrapped in a prelude: an import for every
//! `$proxy_*` / `$wasi_*` function it calls (signatures from the spec
//! table, for its ABI version; WASI ones as `$wasi_snapshot_preview1_NAME`
//! — a `wasi_unstable` guest is a whole `module:`), a memory of two pages, a bump allocator
//! (`proxy_on_memory_allocate`; heap from 32 KiB), the ABI marker, an
//! empty `proxy_on_context_create` unless the case exports one, and
//! `$report` (`(call $report MAP NAME_PTR NAME_LEN VALUE)` adds a header
//! with VALUE in decimal — how a case shows a status or a number). Memory
//! 0..1024 is the case's own, 1024..1056 is `$report`'s. A case may name a
//! whole module file instead (`module:`, relative to the case file).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use weft_abi::AbiVersion;
use weft_abi::coverage::{Kind, SPEC, SpecFunction};

use crate::suite::{PluginSpec, Suite, TestSpec};
use crate::{Error, Filter};

/// A file of cases of one area.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// The ABI area (lifecycle, headers, bodies, ...).
    pub area: String,
    /// Its cases.
    pub cases: Vec<Case>,
}

/// One conformance case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Unique id, `AREA.NAME`.
    pub id: String,
    /// The part of the specification it checks.
    pub spec: String,
    /// The host functions and callbacks whose behaviour it checks.
    pub covers: Vec<String>,
    /// The ABI version the guest exports (`0.1.0`, `0.2.0`, `0.2.1`).
    #[serde(default)]
    pub abi: Option<String>,
    /// The guest's functions and data, wrapped in the prelude.
    #[serde(default)]
    pub wat: Option<String>,
    /// A whole module instead (.wasm or .wat), relative to the case file.
    #[serde(default)]
    pub module: Option<PathBuf>,
    /// Whether the case can be checked through a proxy from outside (the
    /// black-box mode): only what a client and an upstream see. Default
    /// true; false for cases that read metrics, logs or the exact
    /// call-outs.
    #[serde(default = "yes")]
    pub observable: bool,
    /// How the plugin is configured.
    #[serde(default)]
    pub plugin: PluginSpec,
    /// The exchange and what must be seen.
    pub tests: Vec<TestSpec>,
}

fn yes() -> bool {
    true
}

/// How a case went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every test passed.
    Pass,
    /// A test did not see what it expected.
    Fail,
    /// The guest did not load or start.
    Error,
}

/// A case's result.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// The case's id.
    pub id: String,
    /// Its area.
    pub area: String,
    /// The spec section.
    pub spec: String,
    /// What it covers.
    pub covers: Vec<String>,
    /// The guest's ABI version.
    pub abi: String,
    /// How it went.
    pub status: Status,
    /// What went wrong, a line each.
    pub failures: Vec<String>,
}

/// Every case of a directory, read and checked.
pub struct Cases {
    /// (area, case, the directory of its file).
    pub cases: Vec<(String, Case, PathBuf)>,
}

impl Cases {
    /// Reads every `*.yaml` of `dir`. Ids must be unique, `covers` must
    /// name functions of the spec, each case must give a guest.
    pub fn read(dir: &Path) -> Result<Cases, Error> {
        let fail = |m: String| Error::Suite(m);
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| fail(format!("{}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        let mut cases = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            let file: CaseFile = weft_config::from_yaml(&text).map_err(|e| {
                fail(format!(
                    "{}: field `{}`: {}",
                    path.display(),
                    e.path(),
                    e.inner()
                ))
            })?;
            for case in file.cases {
                let at = |m: String| fail(format!("{}: case `{}`: {m}", path.display(), case.id));
                if cases
                    .iter()
                    .any(|(_, c, _): &(String, Case, PathBuf)| c.id == case.id)
                {
                    return Err(at("the id is used twice".into()));
                }
                for name in &case.covers {
                    if !SPEC.iter().any(|f| f.name == name) {
                        return Err(at(format!(
                            "covers `{name}`, which is not a function of the proxy-wasm spec"
                        )));
                    }
                }
                if case.wat.is_some() == case.module.is_some() {
                    return Err(at("give `wat` or `module`, not both".into()));
                }
                version(case.abi.as_deref()).map_err(at)?;
                if case.tests.is_empty() {
                    return Err(at("no tests".into()));
                }
                let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
                cases.push((file.area.clone(), case, dir));
            }
        }
        Ok(Cases { cases })
    }

    /// Runs the cases whose id contains `only` (all when `None`) on weft's
    /// runtime, in-process.
    pub fn run(&self, only: Option<&str>) -> Vec<CaseResult> {
        self.cases
            .iter()
            .filter(|(_, case, _)| only.is_none_or(|o| case.id.contains(o)))
            .map(|(area, case, dir)| run_case(area, case, dir))
            .collect()
    }
}

/// The ABI version a case names (default 0.2.1).
fn version(abi: Option<&str>) -> Result<AbiVersion, String> {
    match abi.unwrap_or("0.2.1") {
        "0.1.0" => Ok(AbiVersion::V0_1_0),
        "0.2.0" => Ok(AbiVersion::V0_2_0),
        "0.2.1" => Ok(AbiVersion::V0_2_1),
        other => Err(format!("abi `{other}`: give 0.1.0, 0.2.0 or 0.2.1")),
    }
}

fn marker(version: AbiVersion) -> &'static str {
    match version {
        AbiVersion::V0_1_0 => "proxy_abi_version_0_1_0",
        AbiVersion::V0_2_0 => "proxy_abi_version_0_2_0",
        AbiVersion::V0_2_1 => "proxy_abi_version_0_2_1",
    }
}

/// The spec's entry for host function `name` in `version`.
fn host_function(name: &str, version: AbiVersion) -> Option<&'static SpecFunction> {
    SPEC.iter().find(|f| {
        f.kind == Kind::HostFunction
            && f.versions.contains(&version)
            && (f.name == name || f.name.replace('.', "_") == name)
    })
}

/// `(call $report MAP NAME_PTR NAME_LEN VALUE)`: adds header NAME with
/// VALUE in decimal to map MAP (0 request, 2 response headers) — how a
/// case shows a status or a number. Writes digits at 1024..1056.
const REPORT: &str = r#"
  (func $report (param $map i32) (param $name i32) (param $nlen i32) (param $v i32)
    (local $p i32) (local $neg i32) (local $u i32)
    (local.set $p (i32.const 1056))
    (local.set $neg (i32.lt_s (local.get $v) (i32.const 0)))
    (local.set $u (select (i32.sub (i32.const 0) (local.get $v)) (local.get $v) (local.get $neg)))
    (loop $digits
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $u) (i32.const 10))))
      (local.set $u (i32.div_u (local.get $u) (i32.const 10)))
      (br_if $digits (i32.ne (local.get $u) (i32.const 0))))
    (if (local.get $neg) (then
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.const 45))))
    (drop (call $proxy_add_header_map_value (local.get $map) (local.get $name) (local.get $nlen)
      (local.get $p) (i32.sub (i32.const 1056) (local.get $p)))))
"#;

/// The whole module for a `wat` guest.
pub fn wrap(snippet: &str, version: AbiVersion) -> Result<String, String> {
    let reports = snippet.contains("(call $report");
    let scanned = if reports {
        format!("{snippet}{REPORT}")
    } else {
        snippet.to_string()
    };
    let mut module = String::from("(module\n");
    let mut imported = Vec::new();
    for (at, _) in scanned.match_indices("(call $") {
        let rest = &scanned[at + "(call $".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if imported.contains(&name) || !(name.starts_with("proxy_") || name.starts_with("wasi_")) {
            continue;
        }
        let f = host_function(&name, version).ok_or_else(|| {
            format!("calls ${name}, which ABI {version} does not define as a host function")
        })?;
        let (from, field) = f.import();
        let params: Vec<&str> = f.params.split(',').filter(|p| !p.is_empty()).collect();
        let _ = write!(module, "  (import \"{from}\" \"{field}\" (func ${name}");
        if !params.is_empty() {
            let _ = write!(module, " (param {})", params.join(" "));
        }
        if !f.result.is_empty() {
            let _ = write!(module, " (result {})", f.result);
        }
        module.push_str("))\n");
        imported.push(name);
    }
    module.push_str(
        "  (memory (export \"memory\") 2)\n  (global $heap (mut i32) (i32.const 32768))\n",
    );
    let _ = writeln!(module, "  (func (export \"{}\"))", marker(version));
    module.push_str(
        "  (func (export \"proxy_on_memory_allocate\") (param $size i32) (result i32)\n    (local $p i32) (local.set $p (global.get $heap))\n    (global.set $heap (i32.add (global.get $heap) (local.get $size)))\n    (local.get $p))\n",
    );
    if !snippet.contains("\"proxy_on_context_create\"") {
        module.push_str("  (func (export \"proxy_on_context_create\") (param i32 i32))\n");
    }
    if reports {
        module.push_str(REPORT);
    }
    module.push_str(snippet);
    module.push_str("\n)\n");
    Ok(module)
}

fn run_case(area: &str, case: &Case, dir: &Path) -> CaseResult {
    let abi = case.abi.clone().unwrap_or_else(|| "0.2.1".to_string());
    let mut result = CaseResult {
        id: case.id.clone(),
        area: area.to_string(),
        spec: case.spec.clone(),
        covers: case.covers.clone(),
        abi,
        status: Status::Pass,
        failures: Vec::new(),
    };
    let started = start(case, dir);
    let mut filter = match started {
        Ok(filter) => filter,
        Err(err) => {
            result.status = Status::Error;
            result.failures.push(err);
            return result;
        }
    };
    let suite = suite_of(case, dir);
    match suite.run(&mut filter, None) {
        Ok(tests) => {
            for test in tests {
                for failure in test.failures {
                    result.failures.push(format!("{}: {failure}", test.name));
                }
            }
        }
        Err(err) => result.failures.push(err.to_string()),
    }
    if !result.failures.is_empty() {
        result.status = Status::Fail;
    }
    result
}

/// The case's tests as a suite (sharing their specs).
fn suite_of(case: &Case, dir: &Path) -> Suite {
    Suite {
        filter: None,
        plugin: PluginSpec {
            name: case.plugin.name.clone(),
            root_id: case.plugin.root_id.clone(),
            vm_id: case.plugin.vm_id.clone(),
            configuration: case.plugin.configuration.clone(),
            vm_configuration: case.plugin.vm_configuration.clone(),
            fail_open: case.plugin.fail_open,
        },
        tests: case.tests.clone(),
        dir: dir.to_path_buf(),
    }
}

/// The case's guest as a WebAssembly binary (for other hosts).
pub fn module_bytes(case: &Case, dir: &Path) -> Result<Vec<u8>, String> {
    let text = match (&case.wat, &case.module) {
        (Some(snippet), _) => wrap(snippet, version(case.abi.as_deref())?)?.into_bytes(),
        (None, Some(module)) => {
            let path = dir.join(module);
            std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?
        }
        (None, None) => return Err("no guest".into()),
    };
    wat::parse_bytes(&text)
        .map(|b| b.into_owned())
        .map_err(|e| format!("case `{}`: {e}", case.id))
}

fn start(case: &Case, dir: &Path) -> Result<Filter, String> {
    let suite = suite_of(case, dir);
    let builder = match (&case.wat, &case.module) {
        (Some(snippet), _) => {
            let version = version(case.abi.as_deref())?;
            let module = wrap(snippet, version)?;
            Filter::from_bytes(&format!("{}.wat", case.id), module.into_bytes())
        }
        (None, Some(module)) => Filter::load(dir.join(module)),
        (None, None) => return Err("no guest".into()),
    };
    suite
        .configure(builder)
        .and_then(crate::FilterBuilder::start)
        .map_err(|e| e.to_string())
}

/// Results by spec function: (function, results of the cases covering it).
fn by_function(results: &[CaseResult]) -> BTreeMap<&'static str, Vec<&CaseResult>> {
    let mut map: BTreeMap<&'static str, Vec<&CaseResult>> = BTreeMap::new();
    for f in SPEC {
        map.insert(f.name, Vec::new());
    }
    for result in results {
        for name in &result.covers {
            if let Some(f) = SPEC.iter().find(|f| f.name == name)
                && let Some(list) = map.get_mut(f.name)
            {
                list.push(result);
            }
        }
    }
    map
}

fn summary(list: &[&CaseResult]) -> String {
    if list.is_empty() {
        return "no case".to_string();
    }
    let failed = list.iter().filter(|r| r.status != Status::Pass).count();
    if failed == 0 {
        format!("pass ({})", list.len())
    } else {
        format!("FAIL ({failed} of {})", list.len())
    }
}

/// The text report: failures in full, then a table per area and per
/// function, then the totals.
pub fn text(results: &[CaseResult]) -> String {
    let mut out = String::new();
    for r in results.iter().filter(|r| r.status != Status::Pass) {
        let _ = writeln!(out, "{} {} ({})", label(&r.status), r.id, r.spec);
        for failure in &r.failures {
            let _ = writeln!(out, "     {failure}");
        }
    }
    let mut areas: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for r in results {
        let entry = areas.entry(&r.area).or_default();
        entry.0 += usize::from(r.status == Status::Pass);
        entry.1 += 1;
    }
    let _ = writeln!(out, "\nby area:");
    for (area, (passed, total)) in &areas {
        let _ = writeln!(out, "  {area:<20} {passed}/{total} passed");
    }
    let _ = writeln!(out, "\nby function:");
    for (name, list) in by_function(results) {
        if !list.is_empty() {
            let _ = writeln!(out, "  {name:<40} {}", summary(&list));
        }
    }
    let passed = results.iter().filter(|r| r.status == Status::Pass).count();
    let _ = writeln!(
        out,
        "\n{passed} passed, {} failed, {} cases",
        results.len() - passed,
        results.len()
    );
    out
}

fn label(status: &Status) -> &'static str {
    match status {
        Status::Pass => "ok  ",
        Status::Fail => "FAIL",
        Status::Error => "ERROR",
    }
}

/// JUnit XML: a test suite per area, a test case per case.
pub fn junit(results: &[CaseResult]) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut areas: BTreeMap<&str, Vec<&CaseResult>> = BTreeMap::new();
    for r in results {
        areas.entry(&r.area).or_default().push(r);
    }
    let failed = results.iter().filter(|r| r.status != Status::Pass).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"proxy-wasm conformance\" tests=\"{}\" failures=\"{failed}\">",
        results.len()
    );
    for (area, list) in areas {
        let failures = list.iter().filter(|r| r.status != Status::Pass).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">",
            escape(area),
            list.len()
        );
        for r in list {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\"",
                escape(area),
                escape(&r.id)
            );
            if r.status == Status::Pass {
                out.push_str("/>\n");
            } else {
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                    escape(&r.spec),
                    escape(&r.failures.join("\n"))
                );
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// `docs/conformance.md`: weft's report, per area and per function, with
/// what the runtime serves.
pub fn markdown(results: &[CaseResult], served: impl Fn(&SpecFunction) -> bool) -> String {
    let mut doc = String::from("# proxy-wasm conformance: weft's report\n\n");
    doc.push_str(
        "Generated by `cargo xtask conformance` (`weft conformance run --format markdown`) from \
         the cases in `conformance/cases/`; a test fails when this file is stale. How the suite \
         works and how to run it against another host: `conformance/README.md`.\n\n",
    );
    let passed = results.iter().filter(|r| r.status == Status::Pass).count();
    let map = by_function(results);
    let covered = |kind: Kind| {
        let total = SPEC.iter().filter(|f| f.kind == kind).count();
        let with = SPEC
            .iter()
            .filter(|f| f.kind == kind && map.get(f.name).is_some_and(|l| !l.is_empty()))
            .count();
        (with, total)
    };
    let (hosts, host_total) = covered(Kind::HostFunction);
    let (callbacks, callback_total) = covered(Kind::Callback);
    let _ = writeln!(
        doc,
        "- cases: {} ({passed} pass, {} fail)\n- host functions with a case: {hosts} of {host_total}\n- callbacks with a case: {callbacks} of {callback_total}\n",
        results.len(),
        results.len() - passed
    );
    doc.push_str("## By area\n\n| area | cases | pass |\n|---|---|---|\n");
    let mut areas: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for r in results {
        let entry = areas.entry(&r.area).or_default();
        entry.0 += 1;
        entry.1 += usize::from(r.status == Status::Pass);
    }
    for (area, (total, pass)) in areas {
        let _ = writeln!(doc, "| {area} | {total} | {pass} |");
    }
    // A function the spec lists once per signature gets one row.
    let mut listed = std::collections::HashSet::new();
    for (kind, title) in [
        (Kind::HostFunction, "Host functions"),
        (Kind::Callback, "Callbacks"),
    ] {
        let _ = writeln!(
            doc,
            "\n## {title}\n\n| function | weft serves it | cases | result |\n|---|---|---|---|"
        );
        for f in SPEC
            .iter()
            .filter(|f| f.kind == kind && listed.insert(f.name))
        {
            let list = map.get(f.name).cloned().unwrap_or_default();
            let ids: Vec<String> = list.iter().map(|r| format!("`{}`", r.id)).collect();
            let _ = writeln!(
                doc,
                "| `{}` | {} | {} | {} |",
                f.name,
                match (served(f), kind) {
                    (true, _) => "yes",
                    (false, Kind::HostFunction) => "no (UNIMPLEMENTED)",
                    (false, Kind::Callback) => "no (never called)",
                },
                ids.join(", "),
                summary(&list)
            );
        }
    }
    doc.push_str("\n## Cases\n\n| case | ABI | spec | result |\n|---|---|---|---|\n");
    for r in results {
        let _ = writeln!(
            doc,
            "| `{}` | {} | {} | {} |",
            r.id,
            r.abi,
            r.spec.replace('|', "\\|"),
            label(&r.status).trim()
        );
    }
    doc
}
