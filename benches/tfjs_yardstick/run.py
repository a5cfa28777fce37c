#!/usr/bin/env python3
"""TensorFlow.js yardstick driver: times distill's teacher and student training steps in
TF.js inside headless Chromium, one fresh browser per backend.

The browser counterpart of benches/pytorch_yardstick.py; an outside reference only, distill
never depends on it. Python 3 standard library only.

    (cd benches/tfjs_yardstick && npm ci)
    python3 benches/tfjs_yardstick/run.py --backends webgpu,wasm --steps webgpu=2,wasm=3

What it does: serves the repository over http.server on 127.0.0.1 (a free port), starts
chromedriver, and for each backend starts a fresh browser over WebDriver (W3C protocol, plain HTTP),
loads benches/tfjs_yardstick/index.html?backend=...&steps=...&models=..., polls the page
title until it reads "done" or "error" (bounded by --timeout), reads the JSON the page wrote
into <pre id="result"> and closes that browser. WebGPU runs on SwiftShader
(--use-webgpu-adapter=swiftshader), the wasm backend single-threaded.

Prints a table of images/second per backend and model, then one JSON object:

    {"load_before": [1m, 5m, 15m], "load_after": [...], "cpu": "...", "browser_version": "...",
     "command": "...", "runs": [{"backend": "webgpu", "ok": true, "rows": [{"name":
     "teacher train b128", "images_per_second": 1.8, "steps": 2, ...}], ...}, ...]}

--json OUT writes that object to OUT as well. Progress goes to stderr. Exit status 0 when
every backend produced figures; 1 when one failed (its error is in the JSON); 2 on setup
errors (missing node_modules, chromium or chromedriver).
"""

import argparse
import datetime
import functools
import http.server
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PAGE = os.path.relpath(os.path.join(HERE, "index.html"), REPO).replace(os.sep, "/")
NEEDED = [
    "node_modules/@tensorflow/tfjs/dist/tf.js",
    "node_modules/@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.js",
    "node_modules/@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm",
    "node_modules/@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.js",
]
BACKENDS = ("webgpu", "wasm", "cpu", "distill-webgpu", "distill-cpu")
# distill's own page (web/, built by scripts/web.sh) in the same browser: its bench's
# training rows at batch 128 (`teacher train b128`, `student train b128`, `student kd b128`).
DISTILL_PAGE = "web/index.html"
MODELS = ("teacher", "student")
POLL_SECONDS = 2.0
# The W3C WebDriver endpoint that starts a browser; each one is addressed below it.
NEW_BROWSER = "/session"


def chromium_args(user_data_dir):
    return [
        "--headless=new", "--no-sandbox", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic",
        f"--user-data-dir={user_data_dir}", "--enable-unsafe-webgpu",
        "--use-webgpu-adapter=swiftshader",
    ]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class WebDriverError(Exception):
    """An error answer from chromedriver (W3C error code and message) or no answer at all."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


class WebDriver:
    """The few W3C WebDriver commands the yardstick needs, over urllib."""

    def __init__(self, base):
        self.base = base

    def call(self, method, path, body=None, timeout=60.0):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as e:
            payload = e.read()
        except (urllib.error.URLError, OSError) as e:  # refused, reset, timed out
            raise WebDriverError("no answer", f"{method} {path}: {e}") from e
        try:
            value = json.loads(payload)["value"]
        except (ValueError, KeyError) as e:
            raise WebDriverError("bad answer", f"{method} {path}: {payload[:200]!r}") from e
        if isinstance(value, dict) and "error" in value:
            message = (value.get("message") or "").strip().splitlines()
            raise WebDriverError(value["error"], message[0] if message else "")
        return value

    def wait_ready(self, seconds):
        deadline = time.monotonic() + seconds
        while True:
            try:
                if self.call("GET", "/status", timeout=5).get("ready"):
                    return
            except WebDriverError:
                pass
            if time.monotonic() > deadline:
                raise WebDriverError("timeout", f"chromedriver not ready after {seconds:.0f} s")
            time.sleep(0.2)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
    }

    def log_message(self, *args):
        pass

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


def start_server():
    handler = functools.partial(QuietHandler, directory=REPO)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def parse_steps(text, backends):
    """'3' (every backend) or 'webgpu=2,wasm=3' (per backend, others default to 3)."""
    steps = {b: 3 for b in backends}
    for part in text.split(","):
        name, sep, value = part.rpartition("=")
        if not sep:
            steps = {b: int(value) for b in backends}
            continue
        if name not in BACKENDS:
            raise ValueError(f"unknown backend {name!r} in --steps")
        steps[name] = int(value)
    if any(n < 1 for n in steps.values()):
        raise ValueError("--steps must be >= 1")
    return steps


def run_backend(driver, chromium, backend, steps, models, port, timeout, distill_tiles=""):
    """One fresh browser: load the page, wait for its result, close the browser."""
    user_data_dir = tempfile.mkdtemp(prefix="tfjs-yardstick-profile-")
    browser_id = browser_version = None
    started = time.monotonic()
    try:
        caps = {
            "browserName": "chrome",
            "pageLoadStrategy": "eager",
            "timeouts": {"pageLoad": 120_000, "script": 60_000},
            "goog:chromeOptions": {"binary": chromium, "args": chromium_args(user_data_dir)},
            "goog:loggingPrefs": {"browser": "ALL"},
        }
        value = driver.call("POST", NEW_BROWSER, {"capabilities": {"alwaysMatch": caps}}, timeout=120)
        browser_id = value["sessionId"]
        browser_version = value["capabilities"].get("browserVersion")
        distill = backend.startswith("distill-")
        if distill:
            query = urllib.parse.urlencode({"device": backend.split("-", 1)[1], "bench": 1,
                                            "batches": "seed", "groups": "train", "quick": 1,
                                            "tiles": distill_tiles})
            url = f"http://127.0.0.1:{port}/{DISTILL_PAGE}?{query}"
        else:
            query = urllib.parse.urlencode({"backend": backend, "steps": steps, "models": ",".join(models)})
            url = f"http://127.0.0.1:{port}/{PAGE}?{query}"
        log(f"{backend}: {url}")
        driver.call("POST", f"{NEW_BROWSER}/{browser_id}/url", {"url": url}, timeout=180)
        deadline = started + timeout
        title = last = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no result after {timeout:.0f} s; the page last said {last!r}")
            try:
                # The page yields between steps, but one step can keep it busy for a while,
                # so a command may wait on it: give it what is left of the deadline.
                if distill:
                    phase = driver.call("POST", f"{NEW_BROWSER}/{browser_id}/execute/sync", {
                        "script": "return window.distillState ? window.distillState.phase : null",
                        "args": []}, timeout=max(5.0, remaining))
                    title = {"benched": "done", "error": "error"}.get(phase, phase)
                else:
                    title = driver.call("GET", f"{NEW_BROWSER}/{browser_id}/title", timeout=max(5.0, remaining))
            except WebDriverError as e:
                if e.code not in ("timeout", "script timeout", "no answer"):
                    raise
                title = last
            if title != last:
                log(f"{backend}: {title}")
                last = title
            if title in ("done", "error"):
                break
            time.sleep(POLL_SECONDS)
        if distill:
            result = distill_result(driver, browser_id, title)
        else:
            text = driver.call("POST", f"{NEW_BROWSER}/{browser_id}/execute/sync", {
                "script": "return document.getElementById('result').textContent", "args": []}, timeout=60)
            result = json.loads(text)
        result.setdefault("backend", backend)
        result["browser_version"] = browser_version
        if title == "error":
            result["console"] = browser_console(driver, browser_id)
        return result
    except (WebDriverError, TimeoutError, ValueError, KeyError) as e:
        result = {"ok": False, "backend": backend, "error": f"{type(e).__name__}: {e}",
                  "browser_version": browser_version}
        if browser_id:
            result["console"] = browser_console(driver, browser_id)
        return result
    finally:
        if browser_id:
            try:
                driver.call("DELETE", f"{NEW_BROWSER}/{browser_id}", timeout=30)
            except WebDriverError as e:
                log(f"{backend}: closing the browser failed ({e}); chromedriver's exit will end it")
        shutil.rmtree(user_data_dir, ignore_errors=True)
        log(f"{backend}: finished in {time.monotonic() - started:.0f} s")


def distill_result(driver, browser_id, title):
    """distill's bench report from its page, as this script's rows."""
    state = json.loads(driver.call("POST", f"{NEW_BROWSER}/{browser_id}/execute/sync", {
        "script": "return JSON.stringify(window.distillState)", "args": []}, timeout=60))
    if title == "error":
        return {"ok": False, "error": state.get("error"), "device": state.get("device")}
    report = json.loads(state["bench"])
    rows = []
    for r in report["rows"]:
        batch = int(r["kernel"].rsplit("b", 1)[1])  # "teacher train b128"
        ips = r.get("value")
        rows.append({"model": r["kernel"], "steps": r.get("calls"), "images_per_second": ips,
                     "seconds": r["calls"] * batch / ips if ips else None, "error": r.get("error")})
    return {"ok": all(r["images_per_second"] for r in rows), "rows": rows,
            "device": state.get("device"), "report": report}


def browser_console(driver, browser_id):
    """The browser's console messages (chromedriver's log extension), best effort."""
    try:
        entries = driver.call("POST", f"{NEW_BROWSER}/{browser_id}/se/log", {"type": "browser"}, timeout=10)
        return [f"{e.get('level')}: {e.get('message')}" for e in entries][-30:]
    except WebDriverError as e:
        return [f"(console unavailable: {e})"]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def table(runs):
    lines = [f"{'backend':8} {'model':8} {'steps':>5} {'seconds':>9} {'img/s':>9}  note"]
    for run in runs:
        if not run.get("ok"):
            lines.append(f"{run['backend']:8} {'-':8} {'-':>5} {'-':>9} {'-':>9}  error: {run.get('error')}")
            continue
        for row in run["rows"]:
            note = ""
            if "js_conv2d_backprop_filter_seconds" in row:
                note = f"JS filter-gradient kernel {row['js_conv2d_backprop_filter_seconds']:.1f} s of it"
            if row.get("images_per_second") is None:
                lines.append(f"{run['backend']:8} {row['model']:8}  error: {row.get('error')}")
                continue
            lines.append(f"{run['backend']:8} {row['model']:8} {row['steps']:>5} {row['seconds']:>9.2f} "
                         f"{row['images_per_second']:>9.2f}  {note}".rstrip())
    return "\n".join(lines)


def stop(proc, name):
    """Ends a process this script started (and its process group), waiting a bounded time."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, PermissionError):
        pass
    except subprocess.TimeoutExpired:
        log(f"{name} did not stop on SIGTERM; killing it")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="webgpu,wasm",
                        help="comma list of webgpu, wasm, cpu (TF.js) and distill-webgpu, "
                             "distill-cpu (distill's page, built by scripts/web.sh)")
    parser.add_argument("--steps", default="webgpu=2,wasm=3",
                        help="timed steps per model: N, or per backend as webgpu=2,wasm=3")
    parser.add_argument("--models", default="teacher,student", help="comma list of teacher, student")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="seconds allowed per backend (browser start to result)")
    parser.add_argument("--distill-tiles", default="", metavar="TMxTN|registers",
                        help="the GEMM loop distill's page builds its WebGPU kernels with "
                             "(e.g. 2x2, registers or default; default: the page's choice "
                             "for the adapter)")
    parser.add_argument("--json", metavar="OUT", help="also write the JSON result to OUT")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = parser.parse_args()

    backends = [b for b in args.backends.split(",") if b]
    models = [m for m in args.models.split(",") if m]
    bad = [b for b in backends if b not in BACKENDS] + [m for m in models if m not in MODELS]
    if bad or not backends or not models:
        print(f"unknown or missing backends/models: {bad}; backends are {BACKENDS}, models {MODELS}",
              file=sys.stderr)
        return 2
    try:
        steps = parse_steps(args.steps, backends)
    except ValueError as e:
        print(f"bad --steps {args.steps!r}: {e}", file=sys.stderr)
        return 2
    missing = [p for p in NEEDED if not os.path.isfile(os.path.join(HERE, p))]
    if missing:
        print(f"TF.js is not installed ({missing[0]} is missing): run `npm ci` in {HERE} first",
              file=sys.stderr)
        return 2
    for path in (args.chromium, args.chromedriver):
        if not os.access(path, os.X_OK):
            print(f"{path} is not an executable (Debian: apt-get install chromium chromium-driver)",
                  file=sys.stderr)
            return 2

    out = {
        "command": shlex.join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "load_before": list(os.getloadavg()),
        "steps": steps,
        "runs": [],
    }
    server = driver_proc = None
    work = tempfile.mkdtemp(prefix="tfjs-yardstick-")
    driver_log = os.path.join(work, "chromedriver.log")
    try:
        server = start_server()
        port = server.server_address[1]
        driver_port = free_port()
        with open(driver_log, "wb") as logf:
            driver_proc = subprocess.Popen(
                [args.chromedriver, f"--port={driver_port}", f"--log-path={driver_log}"],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        driver = WebDriver(f"http://127.0.0.1:{driver_port}")
        driver.wait_ready(30)
        for backend in backends:
            run = run_backend(driver, args.chromium, backend, steps[backend], models, port,
                              args.timeout, args.distill_tiles)
            out["runs"].append(run)
            if run.get("ok"):
                for row in run["rows"]:
                    log(f"{backend} {row['model']}: {row['images_per_second']:.2f} img/s")
            else:
                log(f"{backend}: error: {run.get('error')}")
    except (WebDriverError, OSError) as e:
        out["error"] = f"{type(e).__name__}: {e}"
        log(f"error: {out['error']}")
        try:
            with open(driver_log, errors="replace") as f:
                tail = f.read()[-2000:]
            log(f"chromedriver log tail:\n{tail}")
        except OSError:
            pass
    finally:
        stop(driver_proc, "chromedriver")
        if server is not None:
            server.shutdown()
            server.server_close()
        shutil.rmtree(work, ignore_errors=True)
        out["load_after"] = list(os.getloadavg())

    versions = {r.get("browser_version") for r in out["runs"] if r.get("browser_version")}
    out["browser_version"] = ", ".join(sorted(versions)) or None
    text = json.dumps(out, indent=2)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(table(out["runs"]))
    print(f"load average before {out['load_before']}, after {out['load_after']} "
          f"({out['cpus']} CPUs: {out['cpu']}); Chromium {out['browser_version']}")
    print(text)
    ok = "error" not in out and len(out["runs"]) == len(backends) and all(r.get("ok") for r in out["runs"])
    return 0 if ok else 1


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so the browser, chromedriver and the server are shut down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
