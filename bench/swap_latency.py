"""Hot-swap and rollout latency, by hand: `python3 bench/swap_latency.py target/release/weft`
after `cargo xtask build-filters` and `cargo build --release -p weft-cli`.

Measures (the figures go to docs/benchmarks.md):
- one plugin (hello-rust) swapped by its file, 20 times, each time with new
  module bytes (a custom section appended), on a 2-worker proxy;
- the five production filters as one bundle, 20 applies alternating new
  modules (compiled) and unchanged modules (version bump only, cached);
- one `weft control` and five 1-worker proxies: `weft bundle promote` to all
  five running the new 5-filter bundle (new modules each time).
"""
import json, os, re, shutil, statistics, subprocess, sys, tempfile, time, urllib.request, hashlib

WEFT = sys.argv[1]
FILTERS = "/work/main/target/filters"
tmp = tempfile.mkdtemp()

def spawn(args, log):
    p = subprocess.Popen([WEFT] + args, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
    addrs = {}
    for line in p.stdout:
        line = line.strip()
        if line == "ready":
            break
        m = re.match(r"listening: (\S+) http://(\S+)", line)
        if m:
            addrs[m.group(1)] = m.group(2)
    return p, addrs

def get(url, token=None):
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()

echo, _ = None, None
# An upstream: weft echo.
up = subprocess.Popen([WEFT, "echo", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
up_addr = up.stdout.readline().strip().split("http://")[-1]

CHAIN = open("/work/main/examples/canary-rollout/weft.yaml").read()
plugins_yaml = CHAIN[CHAIN.index("plugins:"):].replace("../../target/filters", FILTERS)

def proxy_config(extra, workers=2):
    return f"""
workers: {workers}
admin: {{address: 127.0.0.1:0}}
{extra}
listeners:
  - {{name: ingress, address: 127.0.0.1:0, cluster: shop-v1, filters: [auth, ratelimit, router, fault, telemetry, hello]}}
clusters:
  - {{name: shop-v1, endpoints: ["{up_addr}"]}}
  - {{name: shop-v2, endpoints: ["{up_addr}"]}}
{plugins_yaml}
  - {{name: hello, module: {tmp}/hello.wasm, watch: true, configuration: '{{"header": "x-hello", "value": "1"}}'}}
"""

def with_section(src, dst, n):
    """Copies a module with a custom section appended: new bytes, new hash, same code."""
    data = open(src, "rb").read()
    name = b"weft-bench"
    payload = bytes([len(name)]) + name + str(n).encode()
    open(dst, "wb").write(data + b"\x00" + bytes([len(payload)]) + payload)

shutil.copy(f"{FILTERS}/hello_rust.wasm", f"{tmp}/hello.wasm")

# (a) one plugin swapped by its file, (b) the five filters as one bundle.
bundle_dir = f"{tmp}/bundle"
os.mkdir(bundle_dir)
FIVE = ["auth", "ratelimit", "router", "fault", "telemetry"]
def bundle_yaml(version, fresh):
    """The five filters as a bundle; with `fresh`, modules with new bytes."""
    text = plugins_yaml
    for f in FIVE:
        if fresh:
            with_section(f"{FILTERS}/{f}.wasm", f"{bundle_dir}/{f}.wasm", version)
        else:
            shutil.copy(f"{FILTERS}/{f}.wasm", f"{bundle_dir}/{f}.wasm")
        text = text.replace(f"{FILTERS}/{f}.wasm", f"{f}.wasm")
    return f"name: chain\nversion: '{version}'\n" + text
def put(path, text):
    open(path + ".tmp", "w").write(text); os.rename(path + ".tmp", path)
bundle_plugins = None
put(f"{bundle_dir}/bundle.yaml", bundle_yaml(0, False))
cfgpath = f"{tmp}/proxy.yaml"
open(cfgpath, "w").write(proxy_config(f'bundles: {{path: "{bundle_dir}"}}'))
log = f"{tmp}/proxy.log"
proxy, addrs = spawn(["proxy", "--config", cfgpath], log)
time.sleep(1)
for i in range(1, 21):
    with_section(f"{FILTERS}/hello_rust.wasm", f"{tmp}/hello.tmp", i); os.rename(f"{tmp}/hello.tmp", f"{tmp}/hello.wasm")
    time.sleep(0.6)
marks = []
for i in range(1, 21):
    # Odd: every module new (compiled); even: only the version changed (cached).
    put(f"{bundle_dir}/bundle.yaml", bundle_yaml(i, i % 2 == 1))
    time.sleep(2.0)
time.sleep(0.5)
text = open(log).read()
single = [float(x) for x in re.findall(r"new version running on every worker ([\d.]+) ms after loading began .*?plugin=hello ", text)]
bundle = [float(x) for x in re.findall(r"bundle applied on every worker after ([\d.]+) ms", text)]
bundle_cold, bundle_warm = bundle[1::2], bundle[2::2]
proxy.kill()
def summ(xs):
    xs = sorted(xs)
    return f"n={len(xs)} median {statistics.median(xs):.1f} ms, min {xs[0]:.1f}, max {xs[-1]:.1f}" if xs else "none"
print("single plugin swap (hello-rust, file watch, 2 workers):", summ(single))
print("bundle of the 5 production filters, every module new (2 workers):", summ(bundle_cold))
print("bundle of the 5 production filters, modules unchanged (2 workers):", summ(bundle_warm))

# (c) control endpoint + 5 proxies: promote -> all serving.
tokens = {"admin": "admin-" + "0" * 20, "proxy": "proxy-" + "0" * 20}
sha = lambda t: hashlib.sha256(t.encode()).hexdigest()
ccfg = f"{tmp}/control.yaml"
open(ccfg, "w").write(f"address: 127.0.0.1:0\ndata_dir: {tmp}/data\ntokens:\n  - {{name: ci, role: admin, sha256: {sha(tokens['admin'])}}}\n  - {{name: fleet, role: proxy, sha256: {sha(tokens['proxy'])}}}\n")
control, caddrs = spawn(["control", "serve", "--config", ccfg], f"{tmp}/control.log")
curl = "http://" + caddrs["control"]
open(f"{tmp}/proxy.token", "w").write(tokens["proxy"])
open(f"{tmp}/admin.token", "w").write(tokens["admin"])
proxies = []
for i in range(5):
    path = f"{tmp}/p{i}.yaml"
    open(path, "w").write(proxy_config(f'bundles: {{control: {{url: "{curl}", token_file: "{tmp}/proxy.token", id: p{i}}}}}', workers=1))
    proxies.append(spawn(["proxy", "--config", path], f"{tmp}/p{i}.log"))
times = []
for version in range(101, 107):
    put(f"{bundle_dir}/bundle.yaml", bundle_yaml(version, True))
    subprocess.run([WEFT, "bundle", "build", bundle_dir, "-o", f"{tmp}/chain.tar.gz"], check=True, capture_output=True)
    subprocess.run([WEFT, "bundle", "push", f"{tmp}/chain.tar.gz", "--control", curl, "--token-file", f"{tmp}/admin.token"], check=True, capture_output=True)
    start = time.time()
    subprocess.run([WEFT, "bundle", "promote", "chain", str(version), "--control", curl, "--token-file", f"{tmp}/admin.token"], check=True, capture_output=True)
    for p, a in proxies:
        while True:
            st = json.loads(get(f"http://{a['admin']}/bundle"))
            if st.get("applied") and st["applied"]["version"] == str(version):
                break
            time.sleep(0.005)
    times.append((time.time() - start) * 1000)
print("promote -> 5 proxies running the 5-filter bundle:", summ(times))
for p, a in proxies:
    p.kill()
control.kill(); up.kill()
