//! Every way a configuration file can be refused, and the message each gives.
//! Update the snapshots with `UPDATE_EXPECT=1 cargo test -p weft-config`,
//! then put any that expect-test wrote as `expect![[r#"..."#]]` back into the
//! `expect![[r#"..."#]]` form: rustfmt breaks the former over lines, and
//! expect-test cannot update it then.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::path::Path;

use expect_test::{Expect, expect};
use weft_config::{InstanceAllocator, load_proxy_config, parse_proxy_config};

const VALID: &str = "
listeners:
  - name: ingress
    address: 127.0.0.1:8080
    cluster: backend
clusters:
  - name: backend
    endpoints: [127.0.0.1:9000]
";

fn check_parse(text: &str, expect: Expect) {
    let err = parse_proxy_config(Path::new("weft.yaml"), text).unwrap_err();
    expect.assert_eq(&err.to_string());
}

/// Loads `text` from a file in a temporary directory (with `module.wasm`
/// present there) and snapshots the error, with the directory shown as $DIR.
fn check_load(text: &str, expect: Expect) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("module.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let path = dir.path().join("weft.yaml");
    std::fs::write(&path, text).unwrap();
    let err = load_proxy_config(&path).unwrap_err();
    let shown = err
        .to_string()
        .replace(&dir.path().display().to_string(), "$DIR");
    expect.assert_eq(&shown);
}

#[test]
fn valid_config_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.yaml");
    std::fs::write(&path, VALID).unwrap();
    let config = load_proxy_config(&path).unwrap();
    assert_eq!(config.listeners[0].cluster.as_deref(), Some("backend"));
    assert_eq!(config.clusters[0].connect_timeout_ms, 5000);
}

#[test]
fn missing_file() {
    let err = load_proxy_config(Path::new("/nonexistent/weft.yaml")).unwrap_err();
    expect![[
        r#"cannot read config file /nonexistent/weft.yaml: No such file or directory (os error 2)"#
    ]]
    .assert_eq(&err.to_string());
}

#[test]
fn unknown_field() {
    check_parse(
        "listeners:\n  - name: a\n    adress: 127.0.0.1:1\n    cluster: b\nclusters: []\n",
        expect![
            "weft.yaml:3:5: field `listeners[0].adress`: unknown field `adress`, expected one of `name`, `address`, `protocol`, `cluster`, `virtual_hosts`, `filters`, `limits`, `tls`, `http2`, `access_log`, `request_id`, `traceparent`"
        ],
    );
}

#[test]
fn wrong_type() {
    check_parse(
        &format!("workers: two\n{VALID}"),
        expect![[r#"weft.yaml:1:10: field `workers`: invalid type: string "two", expected usize"#]],
    );
}

#[test]
fn bad_address() {
    check_parse(
        &VALID.replace("127.0.0.1:8080", "localhost"),
        expect![[
            r#"weft.yaml:4:14: field `listeners[0].address`: invalid socket address syntax: expected an IP address and port such as 127.0.0.1:8080 or [::1]:8080"#
        ]],
    );
}

#[test]
fn missing_field() {
    check_parse(
        "listeners:\n  - name: a\n    address: 127.0.0.1:1\nclusters:\n  - name: b\n",
        expect![[r#"weft.yaml:5:5: field `clusters[0]`: missing field `endpoints`"#]],
    );
}

#[test]
fn not_yaml() {
    check_parse(
        "listeners: [\n",
        expect![[r#"weft.yaml:2:1: field `listeners`: did not find expected node content"#]],
    );
}

#[test]
fn bad_failure_policy() {
    check_parse(
        &format!(
            "{VALID}plugins:\n  - name: p\n    module: m.wasm\n    failure_policy: sometimes\n"
        ),
        expect![[
            r#"weft.yaml:12:21: field `plugins[0].failure_policy`: unknown variant `sometimes`, expected `fail_closed` or `fail_open`"#
        ]],
    );
}

#[test]
fn unknown_cluster() {
    check_load(
        &VALID.replace("cluster: backend", "cluster: backnd"),
        expect![[
            r#"$DIR/weft.yaml: field `listeners[0].cluster`: no cluster named `backnd`; known clusters: `backend`"#
        ]],
    );
}

#[test]
fn unknown_filter() {
    check_load(
        &VALID.replace("cluster: backend", "cluster: backend\n    filters: [auth]"),
        expect![[
            r#"$DIR/weft.yaml: field `listeners[0].filters[0]`: no plugin named `auth`; known plugins: none"#
        ]],
    );
}

#[test]
fn missing_module() {
    check_load(
        &format!("{VALID}plugins:\n  - name: p\n    module: missing.wasm\n"),
        expect![[
            r#"$DIR/weft.yaml: field `plugins[0].module`: module file $DIR/missing.wasm does not exist (relative paths are resolved against the config file's directory; build the filters with `cargo xtask build-filters`)"#
        ]],
    );
}

#[test]
fn duplicate_names() {
    check_load(
        &format!("{VALID}  - name: backend\n    endpoints: [127.0.0.1:9001]\n"),
        expect![[
            r#"$DIR/weft.yaml: field `clusters[1].name`: `backend` is used twice; names in `clusters` must be unique"#
        ]],
    );
}

#[test]
fn empty_cluster() {
    check_load(
        &VALID.replace("[127.0.0.1:9000]", "[]"),
        expect![[
            r#"$DIR/weft.yaml: field `clusters[0].endpoints`: cluster `backend` has no endpoints; list at least one address"#
        ]],
    );
}

#[test]
fn zero_workers() {
    check_load(
        &format!("workers: 0\n{VALID}"),
        expect![[
            r#"$DIR/weft.yaml: field `workers`: must be at least 1 (omit it for one per CPU)"#
        ]],
    );
}

#[test]
fn plugin_configuration_bytes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.wasm"), b"").unwrap();
    let path = dir.path().join("weft.yaml");
    std::fs::write(
        &path,
        format!(
            "{VALID}plugins:\n  - name: json\n    module: m.wasm\n    configuration: {{a: 1, b: [x]}}\n  - name: raw\n    module: m.wasm\n    configuration: \"k=v\"\n  - name: none\n    module: m.wasm\n"
        ),
    )
    .unwrap();
    let config = load_proxy_config(&path).unwrap();
    assert_eq!(
        config.plugins[0].configuration.to_bytes(),
        br#"{"a":1,"b":["x"]}"#
    );
    assert_eq!(config.plugins[1].configuration.to_bytes(), b"k=v");
    assert_eq!(config.plugins[2].configuration.to_bytes(), b"");
    assert_eq!(config.plugins[0].module, dir.path().join("m.wasm"));
}

#[test]
fn plugin_limits_out_of_range() {
    check_load(
        &format!(
            "{VALID}plugins:\n  - name: p\n    module: module.wasm\n    limits: {{memory_mb: 0}}\n"
        ),
        expect![[
            r#"$DIR/weft.yaml: field `plugins[0].limits.memory_mb`: 0 is out of range; use 1 to 4096"#
        ]],
    );
}

#[test]
fn plugin_limits_unknown_field() {
    check_parse(
        &format!("{VALID}plugins:\n  - name: p\n    module: m.wasm\n    limits: {{memory: 5}}\n"),
        expect![
            "weft.yaml:12:14: field `plugins[0].limits.memory`: unknown field `memory`, expected one of `memory_mb`, `callback_ms`, `start_ms`, `body_buffer_mb`"
        ],
    );
}

/// The example in docs/configuration.md parses: the reference cannot drift
/// from the schema.
#[test]
fn reference_example_parses() {
    let doc = include_str!("../../../docs/configuration.md");
    let start = doc.find("```yaml\n").unwrap() + "```yaml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let mut config =
        parse_proxy_config(Path::new("docs/configuration.md"), &doc[start..end]).unwrap();
    assert_eq!(config.plugins[0].limits.callback_ms, 200);
    assert_eq!(
        config.plugins[0]
            .allowed_host_functions
            .as_ref()
            .unwrap()
            .len(),
        4
    );
    assert!(config.admin.is_some());
    // With the files it names present, it is valid.
    let file = tempfile::NamedTempFile::new().unwrap();
    let present = file.path().to_path_buf();
    for plugin in &mut config.plugins {
        plugin.module = present.clone();
    }
    assert!(config.dns.hosts_file.is_some());
    config.dns.hosts_file = Some(present.clone());
    if let Some(bundles) = &mut config.bundles {
        bundles.path = Some(present.clone());
        if let Some(control) = &mut bundles.control {
            control.token_file = present.clone();
        }
        assert!(bundles.oci.is_some());
    }
    for tls in config.listeners.iter_mut().filter_map(|l| l.tls.as_mut()) {
        for files in &mut tls.certificates {
            files.cert = present.clone();
            files.key = present.clone();
        }
        tls.client_ca = Some(present.clone());
    }
    for tls in config.clusters.iter_mut().filter_map(|c| c.tls.as_mut()) {
        for file in [&mut tls.ca, &mut tls.cert, &mut tls.key]
            .into_iter()
            .flatten()
        {
            *file = present.clone();
        }
    }
    config.validate(Path::new("docs/configuration.md")).unwrap();
}

const ROUTED: &str = "
listeners:
  - name: ingress
    address: 127.0.0.1:8080
    virtual_hosts:
      - name: api
        domains: [api.example.com]
        routes:
          - match: {prefix: /v1/}
            forward:
              weighted_clusters: [{cluster: v1, weight: 90}, {cluster: v2, weight: 10}]
              retry: {attempts: 2, on: [5xx]}
          - direct_response: {status: 404, body: nope}
clusters:
  - {name: v1, endpoints: ['127.0.0.1:9001']}
  - {name: v2, endpoints: ['localhost:9002']}
";

#[test]
fn routed_config_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.yaml");
    std::fs::write(&path, ROUTED).unwrap();
    load_proxy_config(&path).unwrap();
}

#[test]
fn listener_without_destination() {
    check_load(
        &VALID.replace("    cluster: backend\n", ""),
        expect![[
            r#"$DIR/weft.yaml: field `listeners[0]`: listener `ingress` has nowhere to send requests; give `cluster` or `virtual_hosts`"#
        ]],
    );
}

#[test]
fn listener_with_cluster_and_virtual_hosts() {
    check_load(
        &ROUTED.replace("    virtual_hosts:", "    cluster: v1\n    virtual_hosts:"),
        expect![[
            r#"$DIR/weft.yaml: field `listeners[0].cluster`: give either `cluster` (every request to one cluster) or `virtual_hosts`, not both"#
        ]],
    );
}

#[test]
fn route_with_two_actions() {
    check_load(
        &ROUTED.replace(
            "direct_response: {status: 404, body: nope}",
            "direct_response: {status: 404}\n            redirect: {host: x}",
        ),
        expect![[
            r#"$DIR/weft.yaml: field `listeners[0].virtual_hosts[0].routes[1]`: give exactly one action: `forward`, `redirect` or `direct_response`"#
        ]],
    );
}

#[test]
fn weighted_cluster_unknown() {
    check_load(
        &ROUTED.replace("{cluster: v2, weight: 10}", "{cluster: v3, weight: 10}"),
        expect![[
            r#"$DIR/weft.yaml: field `listeners[0].virtual_hosts[0].routes[0].forward.weighted_clusters[1].cluster`: no cluster named `v3`; known clusters: `v1`, `v2`"#
        ]],
    );
}

#[test]
fn weights_add_up_to_zero() {
    check_load(
        &ROUTED
            .replace("weight: 90", "weight: 0")
            .replace("weight: 10", "weight: 0"),
        expect![[
            r#"$DIR/weft.yaml: field `listeners[0].virtual_hosts[0].routes[0].forward.weighted_clusters`: the weights add up to 0; give at least one a positive weight"#
        ]],
    );
}

#[test]
fn bad_path_regex() {
    check_load(
        &ROUTED.replace("match: {prefix: /v1/}", "match: {regex: '/v1/(['}"),
        expect![[r#"
            $DIR/weft.yaml: field `listeners[0].virtual_hosts[0].routes[0].match.regex`: `/v1/([` is not a valid regular expression: regex parse error:
                /v1/([
                     ^
            error: unclosed character class"#]],
    );
}

#[test]
fn header_match_without_condition() {
    check_load(
        &ROUTED.replace("match: {prefix: /v1/}", "match: {headers: [{name: x-a}]}"),
        expect![[
            r#"$DIR/weft.yaml: field `listeners[0].virtual_hosts[0].routes[0].match.headers[0]`: give exactly one of `exact`, `prefix`, `suffix`, `regex`, `present`"#
        ]],
    );
}

#[test]
fn retriable_status_codes_without_codes() {
    check_load(
        &ROUTED.replace("on: [5xx]", "on: [retriable-status-codes]"),
        expect![[
            r#"$DIR/weft.yaml: field `listeners[0].virtual_hosts[0].routes[0].forward.retry.status_codes`: `retriable-status-codes` is in `on`, so list the statuses to retry"#
        ]],
    );
}

#[test]
fn unknown_retry_condition() {
    check_parse(
        &ROUTED.replace("on: [5xx]", "on: [4xx]"),
        expect![[
            r#"weft.yaml:12:41: field `listeners[0].virtual_hosts[0].routes[0].forward.retry.on[0]`: unknown variant `4xx`, expected one of `5xx`, `gateway-error`, `reset`, `connect-failure`, `retriable-status-codes`"#
        ]],
    );
}

#[test]
fn domain_served_twice() {
    check_load(
        &ROUTED.replace(
            "          - direct_response: {status: 404, body: nope}\n",
            "          - direct_response: {status: 404, body: nope}\n      - name: again\n        domains: [API.example.com]\n        routes: [{direct_response: {status: 200}}]\n",
        ),
        expect![[r#"$DIR/weft.yaml: field `listeners[0].virtual_hosts[1].domains[0]`: `API.example.com` is served by two virtual hosts of this listener"#]],
    );
}

#[test]
fn bad_domain_wildcard() {
    check_load(
        &ROUTED.replace("[api.example.com]", "[api.*.com]"),
        expect![[
            r#"$DIR/weft.yaml: field `listeners[0].virtual_hosts[0].domains[0]`: `api.*.com`: a `*` may only stand alone, start the name (`*.example.com`) or end it (`api.*`)"#
        ]],
    );
}

#[test]
fn bad_endpoint() {
    check_load(
        &ROUTED.replace("localhost:9002", "localhost"),
        expect![[
            r#"$DIR/weft.yaml: field `clusters[1].endpoints[0]`: `localhost`: no port; write IP:PORT or HOST:PORT, such as 10.0.0.5:8000 or backend.internal:8000"#
        ]],
    );
}

#[test]
fn redirect_status_not_a_redirect() {
    check_load(
        &ROUTED.replace(
            "direct_response: {status: 404, body: nope}",
            "redirect: {status: 200}",
        ),
        expect![[
            r#"$DIR/weft.yaml: field `listeners[0].virtual_hosts[0].routes[1].redirect.status`: 200 is not a redirect status; use 301, 302, 303, 307 or 308"#
        ]],
    );
}

#[test]
fn hash_on_two_keys() {
    check_load(
        &ROUTED.replace(
            "endpoints: ['127.0.0.1:9001']",
            "endpoints: ['127.0.0.1:9001'], lb_policy: ring_hash, hash_on: {header: x-user, source_ip: true}",
        ),
        expect![[r#"$DIR/weft.yaml: field `clusters[0].hash_on`: give exactly one of `header`, `cookie`, `source_ip: true`"#]],
    );
}

#[test]
fn header_limit_too_small() {
    check_load(
        &VALID.replace(
            "cluster: backend",
            "cluster: backend\n    limits: {max_request_headers_kb: 4}",
        ),
        expect![[
            r#"$DIR/weft.yaml: field `listeners[0].limits.max_request_headers_kb`: 4 is out of range; use 8 to 1024"#
        ]],
    );
}

#[test]
fn retry_budget_over_100_percent() {
    check_load(
        &VALID.replace(
            "endpoints: [127.0.0.1:9000]",
            "endpoints: [127.0.0.1:9000]\n    circuit_breakers: {retry_budget: {percent: 150}}",
        ),
        expect![[
            r#"$DIR/weft.yaml: field `clusters[0].circuit_breakers.retry_budget.percent`: 150 is out of range; use 0 to 100"#
        ]],
    );
}

#[test]
fn missing_hosts_file() {
    check_load(
        &format!("dns: {{hosts_file: hosts}}\n{VALID}"),
        expect![[
            r#"$DIR/weft.yaml: field `dns.hosts_file`: file $DIR/hosts does not exist (relative paths are resolved against the config file's directory)"#
        ]],
    );
}

#[test]
fn dns_refresh_too_often() {
    check_load(
        &VALID.replace(
            "endpoints: [127.0.0.1:9000]",
            "endpoints: [127.0.0.1:9000]\n    dns_refresh_ms: 5",
        ),
        expect![[
            r#"$DIR/weft.yaml: field `clusters[0].dns_refresh_ms`: 5 is out of range; use 100 to 86400000"#
        ]],
    );
}

#[test]
fn runtime_defaults_pool_and_cache_with_a_relative_dir_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.yaml");
    std::fs::write(&path, VALID).unwrap();
    let config = load_proxy_config(&path).unwrap();
    assert_eq!(config.runtime.allocator, InstanceAllocator::Pooling);
    assert!(config.runtime.module_cache.enabled);
    let plugins = |isolations: &[&str]| -> Vec<weft_config::Plugin> {
        isolations
            .iter()
            .map(|isolation| {
                serde_yaml::from_str(&format!(
                    "{{name: p, module: m.wasm, isolation: {isolation}}}"
                ))
                .unwrap()
            })
            .collect()
    };
    let runtime = &config.runtime;
    assert_eq!(runtime.max_vms_for(2, &plugins(&["worker"; 5])), 64);
    assert_eq!(runtime.max_vms_for(16, &plugins(&["worker"; 10])), 640);
    assert_eq!(
        runtime.max_vms_for(usize::MAX, &plugins(&["worker"; 2])),
        4096
    );
    assert_eq!(
        runtime.max_vms_for(2, &plugins(&["worker", "request"])),
        2 * (4 + 256)
    );

    std::fs::write(
        &path,
        format!("runtime: {{module_cache: {{dir: cache}}, max_vms: 8}}\n{VALID}"),
    )
    .unwrap();
    let config = load_proxy_config(&path).unwrap();
    assert_eq!(
        config.runtime.module_cache.directory(),
        Some(dir.path().join("cache"))
    );
    assert_eq!(config.runtime.max_vms_for(2, &config.plugins), 8);

    std::fs::write(
        &path,
        format!("runtime: {{module_cache: {{enabled: false, dir: cache}}}}\n{VALID}"),
    )
    .unwrap();
    assert_eq!(
        load_proxy_config(&path)
            .unwrap()
            .runtime
            .module_cache
            .directory(),
        None
    );
}

#[test]
fn unknown_allocator() {
    check_parse(
        &format!("runtime: {{allocator: mmap}}\n{VALID}"),
        expect![[
            r#"weft.yaml:1:22: field `runtime.allocator`: unknown variant `mmap`, expected `pooling` or `on_demand`"#
        ]],
    );
}

#[test]
fn max_vms_without_the_pool() {
    check_load(
        &format!("runtime: {{allocator: on_demand, max_vms: 100}}\n{VALID}"),
        expect![[
            r#"$DIR/weft.yaml: field `runtime.max_vms`: sizes the pool of the `pooling` allocator; remove it, or set `allocator: pooling`"#
        ]],
    );
}

#[test]
fn max_vms_out_of_range() {
    check_load(
        &format!("runtime: {{max_vms: 5000}}\n{VALID}"),
        expect![[
            r#"$DIR/weft.yaml: field `runtime.max_vms`: 5000 is out of range; use 1 to 4096"#
        ]],
    );
}

#[test]
fn max_vms_too_few_for_the_plugins() {
    check_load(
        &format!(
            "workers: 4\nruntime: {{max_vms: 8}}\n{VALID}plugins:\n  - {{name: a, module: module.wasm}}\n  - {{name: b, module: module.wasm}}\n"
        ),
        expect![[
            r#"$DIR/weft.yaml: field `runtime.max_vms`: 8 is too few for 2 plugin(s) on 4 worker(s): give at least 12 (a VM per plugin per worker, and one per worker to swap a plugin in)"#
        ]],
    );
}

#[test]
fn two_listeners_on_one_address_are_refused() {
    check_load(
        "
listeners:
  - {name: a, address: 127.0.0.1:18080, cluster: backend}
  - {name: b, address: 127.0.0.1:18080, cluster: backend}
clusters:
  - {name: backend, endpoints: [127.0.0.1:9000]}
",
        expect![[
            r#"$DIR/weft.yaml: field `listeners[1].address`: 127.0.0.1:18080 overlaps listeners[0].address (127.0.0.1:18080): each listener, and the admin endpoint, needs an address of its own"#
        ]],
    );
    // A wildcard address overlaps every address on its port.
    check_load(
        "
listeners:
  - {name: a, address: 0.0.0.0:18080, cluster: backend}
  - {name: b, address: 127.0.0.1:18080, cluster: backend}
clusters:
  - {name: backend, endpoints: [127.0.0.1:9000]}
",
        expect![[
            r#"$DIR/weft.yaml: field `listeners[1].address`: 127.0.0.1:18080 overlaps listeners[0].address (0.0.0.0:18080): each listener, and the admin endpoint, needs an address of its own"#
        ]],
    );
    // The admin endpoint needs its own address too.
    check_load(
        "
admin: {address: 127.0.0.1:18080}
listeners:
  - {name: a, address: 127.0.0.1:18080, cluster: backend}
clusters:
  - {name: backend, endpoints: [127.0.0.1:9000]}
",
        expect![[
            r#"$DIR/weft.yaml: field `admin.address`: 127.0.0.1:18080 overlaps listeners[0].address (127.0.0.1:18080): each listener, and the admin endpoint, needs an address of its own"#
        ]],
    );
}

#[test]
fn port_zero_and_other_ports_are_no_clash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.yaml");
    std::fs::write(
        &path,
        "
admin: {address: 127.0.0.1:0}
listeners:
  - {name: a, address: 127.0.0.1:0, cluster: backend}
  - {name: b, address: 127.0.0.1:0, cluster: backend}
  - {name: c, address: 127.0.0.1:18080, cluster: backend}
  - {name: d, address: 127.0.0.2:18080, cluster: backend}
  - {name: e, address: 0.0.0.0:18081, cluster: backend}
clusters:
  - {name: backend, endpoints: [127.0.0.1:9000]}
",
    )
    .unwrap();
    load_proxy_config(&path).unwrap();
}

#[test]
fn requiring_client_certificates_without_a_client_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["cert.pem", "key.pem"] {
        std::fs::write(dir.path().join(file), "").unwrap();
    }
    let path = dir.path().join("weft.yaml");
    let config = |extra: &str| {
        format!(
            "
listeners:
  - name: a
    address: 127.0.0.1:0
    cluster: backend
    tls:
      certificates: [{{cert: cert.pem, key: key.pem}}]
{extra}clusters:
  - {{name: backend, endpoints: [127.0.0.1:9000]}}
"
        )
    };
    // Without client_ca, no client is asked for a certificate: a
    // requirement there would be silently ignored.
    std::fs::write(&path, config("      require_client_certificate: true\n")).unwrap();
    let err = load_proxy_config(&path).unwrap_err().to_string();
    expect![[r#"$DIR/weft.yaml: field `listeners[0].tls.require_client_certificate`: means something only with `client_ca` (the CAs client certificates must chain to): set `client_ca`, or remove it"#]].assert_eq(&err.replace(&dir.path().display().to_string(), "$DIR"));
    std::fs::write(&path, config("")).unwrap();
    let loaded = load_proxy_config(&path).unwrap();
    assert_eq!(
        loaded.listeners[0]
            .tls
            .as_ref()
            .unwrap()
            .require_client_certificate,
        None
    );
}

#[test]
fn a_directory_where_a_file_goes_is_named_as_one() {
    check_load(
        "
listeners:
  - {name: a, address: 127.0.0.1:0, cluster: backend, filters: [p]}
clusters:
  - {name: backend, endpoints: [127.0.0.1:9000]}
plugins:
  - {name: p, module: .}
",
        expect![[
            r#"$DIR/weft.yaml: field `plugins[0].module`: $DIR/. is a directory: name the module's .wasm or .wat file"#
        ]],
    );
    check_load(
        "
dns: {hosts_file: .}
listeners:
  - {name: a, address: 127.0.0.1:0, cluster: backend}
clusters:
  - {name: backend, endpoints: [127.0.0.1:9000]}
",
        expect![[r#"$DIR/weft.yaml: field `dns.hosts_file`: $DIR/. is a directory, not a file"#]],
    );
}

#[test]
fn a_byte_order_mark_before_the_first_key_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.yaml");
    std::fs::write(&path, format!("\u{feff}{}", VALID.trim_start())).unwrap();
    let config = load_proxy_config(&path).unwrap();
    assert_eq!(config.listeners[0].name, "ingress");
    assert_eq!(config.clusters[0].name, "backend");
}
