// The page's glue: checks the browser, loads the engine (WebAssembly built from the distill
// crate, see docs/web.md), fetches Fashion-MNIST from datasets/, and drives the three
// trainings, the chart, the summary, the downloads and the shader check.
//
// Query parameters (used by the tests, handy by hand): device=auto|webgpu|cpu,
// power=..., train=N, test=N (image counts), epochs=E (every model), autorun=1 (open and
// train at once), shaders=1 (open and compile every shader at once), bench=1 (open and
// benchmark at once; quick=0 for the longer budget, batches=seed|software to override the
// batch sizes chosen for the device, groups=train,infer,latency to run only some rows),
// tiles=TMxTN|registers|default (the WebGPU GEMM loop: TM×TN per invocation through
// workgroup memory, e.g. 2x2, or the registers-only loop; default: registers on an adapter
// that runs on a CPU, 4x4 elsewhere),
// ladder=matmul|conv (open and run that kernel ladder at once; quick=0 for every timing
// shape, check=1 to check without timing).
// window.distillState holds what the page shows, for a test driver to read.

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = { phase: "loading", device: null, runs: {}, summary: null, shaders: null, bench: null, ladder: null, error: null };
window.distillState = state;

function fail(message) {
  state.phase = "error";
  state.error = message;
  const el = $("unsupported");
  el.textContent = message;
  el.hidden = false;
  $("status").textContent = "stopped: " + message;
}

// WebAssembly with 128-bit SIMD: the smallest module that uses a v128 (i32x4.splat).
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3,
  2, 1, 0, 10, 8, 1, 6, 0, 65, 0, 253, 17, 11]);

function browserProblem() {
  if (typeof WebAssembly !== "object" || typeof WebAssembly.instantiate !== "function") {
    return "This browser cannot run WebAssembly, which distill needs. Use a current Chrome, Edge, Firefox or Safari.";
  }
  if (!WebAssembly.validate(SIMD_PROBE)) {
    return "This browser's WebAssembly has no 128-bit SIMD, which distill's CPU kernels need. Use a current browser.";
  }
  return null;
}

let engine = null, wasm = null;

async function loadEngine() {
  const problem = browserProblem();
  if (problem) { fail(problem); return false; }
  try {
    wasm = await import("./pkg/distill.js");
    await wasm.default();
  } catch (e) {
    fail("Could not load the engine (web/pkg/): " + e + ". Build it with scripts/web.sh.");
    return false;
  }
  state.phase = "ready";
  $("open").disabled = false;
  $("status").textContent = "engine loaded; open a device";
  return true;
}

async function openDevice() {
  const choice = params.get("device") || $("device").value;
  const power = params.get("power") || $("power").value;
  $("status").textContent = "opening " + choice + " …";
  try {
    engine = await wasm.open_engine(choice, power, params.get("tiles") || "");
  } catch (e) {
    fail("Could not open the device: " + (e.message || e));
    return false;
  }
  state.device = JSON.parse(engine.info());
  const d = state.device;
  let text = `using: ${d.backend === "webgpu" ? "WebGPU" : "the CPU (WebAssembly, " + d.cpu_simd + ")"}\n`;
  text += `device: ${d.name}\nwhy: ${d.why}\n`;
  if (d.adapter) {
    const a = d.adapter;
    text += `adapter: ${a.name || "(name hidden by the browser)"} · ${a.device_type} · driver ${a.driver || "?"} ${a.driver_info || ""}\n`;
    text += `limits: storage binding ${(a.max_storage_buffer_binding_size / 2 ** 20).toFixed(0)} MiB, ` +
      `buffer ${(a.max_buffer_size / 2 ** 20).toFixed(0)} MiB, workgroup memory ${a.max_compute_workgroup_storage_size / 1024} KiB, ` +
      `${a.max_compute_invocations_per_workgroup} invocations\n`;
    text += `features: shader-f16 ${a.shader_f16 ? "yes" : "no"}, subgroups ${a.subgroup ? "yes" : "no"}, timestamp queries ${a.timestamp_query ? "yes" : "no"}`;
  }
  if (d.tiles) text += `\nGEMM tiles: ${d.tiles}`;
  $("device-info").textContent = text;
  $("run").disabled = false;
  $("bench").disabled = false;
  $("ladder").disabled = false;
  $("shaders").disabled = d.backend !== "webgpu";
  state.phase = "open";
  $("status").textContent = "device open";
  return true;
}

async function fetchBytes(name) {
  const r = await fetch("../datasets/fashion-mnist/" + name);
  if (!r.ok) throw new Error(`${name}: HTTP ${r.status} (serve the repository root, see docs/web.md)`);
  return new Uint8Array(await r.arrayBuffer());
}

function sizes() {
  const full = (params.get("size") || $("size").value) === "full";
  const n = (key, dflt) => (params.has(key) ? Number(params.get(key)) : dflt);
  return {
    train: n("train", full ? 0 : 2000),
    test: n("test", full ? 0 : 1000),
    teacherEpochs: n("epochs", full ? 5 : 1),
    studentEpochs: n("epochs", full ? 10 : 1),
  };
}

// --- the chart: mean training loss per read-back, one line per run ---------------------------
const COLORS = { teacher: "#1f77b4", baseline: "#ff7f0e", kd: "#2ca02c" };
function drawChart() {
  const c = $("chart"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const runs = Object.entries(state.runs);
  const points = runs.flatMap(([, r]) => r.losses);
  if (!points.length) return;
  const maxX = Math.max(...runs.map(([, r]) => r.losses.length)), maxY = Math.max(...points);
  const x = (i) => 40 + (i / Math.max(1, maxX - 1)) * (c.width - 60);
  const y = (v) => c.height - 25 - (v / maxY) * (c.height - 45);
  g.strokeStyle = "#888"; g.beginPath(); g.moveTo(40, 10); g.lineTo(40, c.height - 25); g.lineTo(c.width - 10, c.height - 25); g.stroke();
  g.fillStyle = "#444"; g.font = "12px sans-serif";
  g.fillText(maxY.toFixed(2), 2, 18); g.fillText("0", 26, c.height - 25); g.fillText("training loss", 50, 18);
  runs.forEach(([name, r], k) => {
    g.strokeStyle = COLORS[name] || "#000"; g.beginPath();
    r.losses.forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v))));
    g.stroke();
    g.fillStyle = g.strokeStyle; g.fillText(name, c.width - 90, 20 + 15 * k);
  });
}

function onProgress(run) {
  return (json) => {
    const p = JSON.parse(json);
    const r = state.runs[run];
    if (p.event === "batch") {
      r.losses.push(p.loss);
      $("progress").value = p.done / p.total;
      $("status").textContent = `${run}: epoch ${p.epoch}, batch ${p.done}/${p.total}, loss ${p.loss.toFixed(4)}, ${p.images_per_second.toFixed(1)} img/s`;
      drawChart();
    } else if (p.event === "epoch") {
      r.epochs.push(p.record);
    }
  };
}

async function trainOne(run, data, settings, teacher) {
  state.runs[run] = { losses: [], epochs: [] };
  const json = JSON.stringify({ run, ...settings });
  const model = teacher
    ? await wasm.distill_model(engine, data, teacher, json, onProgress(run))
    : await wasm.train_model(engine, data, json, onProgress(run));
  const summary = JSON.parse(model.summary());
  Object.assign(state.runs[run], { model, summary });
  return model;
}

function fmtPct(x) { return (100 * x).toFixed(2) + "%"; }

function showSummary() {
  const rows = ["teacher", "baseline", "kd"].filter((r) => state.runs[r] && state.runs[r].summary);
  const s = Object.fromEntries(rows.map((r) => [r, state.runs[r].summary]));
  const last = (r) => s[r].history[s[r].history.length - 1];
  let html = "<table><tr><th>model</th><th>architecture</th><th>parameters</th><th>test accuracy</th><th>img/s (last epoch)</th><th>seconds</th></tr>";
  for (const r of rows) {
    const h = last(r);
    html += `<tr><td>${r}</td><td>${s[r].arch}</td><td>${s[r].parameters.toLocaleString()}</td><td>${fmtPct(h.test_accuracy)}</td><td>${h.images_per_second.toFixed(1)}</td><td>${s[r].seconds.toFixed(1)}</td></tr>`;
  }
  html += "</table>";
  if (s.teacher && s.baseline && s.kd) {
    const gain = last("kd").test_accuracy - last("baseline").test_accuracy;
    const gap = last("teacher").test_accuracy - last("kd").test_accuracy;
    html += `<p>What KD bought: <b>${gain >= 0 ? "+" : ""}${(100 * gain).toFixed(2)} points</b> over the baseline student; ` +
      `${(100 * gap).toFixed(2)} points from the teacher with ${(s.teacher.parameters / s.kd.parameters).toFixed(1)}× fewer parameters.</p>`;
  }
  $("summary").innerHTML = html;
  state.summary = Object.fromEntries(rows.map((r) => [r, { ...s[r], final: last(r) }]));
}

async function addDownload(run) {
  const bytes = await state.runs[run].model.checkpoint();
  const url = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
  const a = document.createElement("a");
  a.href = url; a.download = `${run}.safetensors`; a.textContent = `${run}.safetensors`; a.id = `download-${run}`;
  $("downloads").append(a, " ");
}

// A test driver reads a checkpoint's bytes through this (base64).
window.distillCheckpoint = async (run) => {
  const bytes = await state.runs[run].model.checkpoint();
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
};

async function runAll() {
  $("run").disabled = true;
  state.phase = "training";
  try {
    const n = sizes();
    $("status").textContent = "fetching Fashion-MNIST …";
    const files = await Promise.all(["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
      "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"].map(fetchBytes));
    const data = new wasm.WebData(...files, n.train, n.test);
    state.data = { train: data.train_len(), test: data.test_len() };
    const teacher = await trainOne("teacher", data, { arch: "teacher", epochs: n.teacherEpochs });
    await trainOne("baseline", data, { arch: "student", epochs: n.studentEpochs });
    await trainOne("kd", data, { arch: "student", epochs: n.studentEpochs }, teacher);
    showSummary();
    for (const r of ["teacher", "baseline", "kd"]) await addDownload(r);
    state.phase = "done";
    $("status").textContent = "done";
  } catch (e) {
    fail("Training failed: " + (e.message || e));
  }
  $("run").disabled = false;
}

async function checkShaders() {
  $("shaders").disabled = true;
  $("status").textContent = "compiling every shader …";
  try {
    const checks = JSON.parse(await wasm.check_all_shaders(engine));
    state.shaders = checks;
    const bad = checks.filter((c) => c.status === "failed").length;
    const unsupported = checks.filter((c) => c.status === "unsupported").length;
    let html = `<p class="${bad ? "error" : "ok"}">${checks.length - bad - unsupported} compiled, ${bad} failed, ${unsupported} unsupported by this adapter</p><table><tr><th>module</th><th>result</th></tr>`;
    for (const c of checks) html += `<tr><td>${c.module}</td><td>${c.status}${c.detail ? ": " + c.detail : ""}</td></tr>`;
    $("shader-report").innerHTML = html + "</table>";
    state.phase = "shaders-checked";
    $("status").textContent = "shaders checked";
  } catch (e) {
    fail("Shader check failed: " + (e.message || e));
  }
  $("shaders").disabled = false;
}

async function benchmark() {
  $("bench").disabled = true;
  try {
    const quick = params.get("quick") !== "0";
    const json = await wasm.bench_report(engine, navigator.userAgent, navigator.hardwareConcurrency || 1, quick,
      params.get("batches") || "auto", params.get("groups") || "",
      (row) => { $("status").textContent = "benchmarking: " + row + " …"; });
    const report = JSON.parse(json);
    state.bench = json;
    let html = "<table><tr><th>row</th><th>shape</th><th>value</th></tr>";
    for (const r of report.rows) {
      html += `<tr><td>${r.kernel}</td><td>${r.shape}</td><td>${r.value == null ? r.error : r.value.toFixed(2) + " " + r.unit}</td></tr>`;
    }
    $("bench-report").innerHTML = html + "</table>";
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([json], { type: "application/json" }));
    a.download = "browser-bench.json"; a.textContent = "browser-bench.json"; a.id = "download-bench";
    $("bench-download").replaceChildren(a);
    state.phase = "benched";
    $("status").textContent = "benchmark done";
  } catch (e) {
    fail("Benchmark failed: " + (e.message || e));
  }
  $("bench").disabled = false;
}

// A ladder report's checks, then its timings as one row per rung and one column per shape.
function ladderHtml(report) {
  let html = "<table><tr><th>rung</th><th>check</th></tr>";
  for (const c of report.checks) {
    const text = c.status === "pass"
      ? `ok on ${c.shapes} shapes (worst error ${(100 * c.worst_error).toFixed(0)}% of its bound)`
      : (c.status === "fail" ? "WRONG: " : "not supported here: ") + c.why;
    html += `<tr><td>${c.rung}</td><td class="${c.status === "fail" ? "error" : ""}">${text}</td></tr>`;
  }
  html += "</table>";
  if (report.timings.length === 0) return html;
  const shapes = [...new Set(report.timings.map((t) => t.shape))];
  const rungs = [...new Set(report.timings.map((t) => t.rung))];
  html += "<p>GFLOP/s · × previous rung, same shape, same run:</p><table><tr><th>rung</th>";
  for (const s of shapes) html += `<th>${s}</th>`;
  html += "</tr>";
  for (const r of rungs) {
    html += `<tr><td>${r}</td>`;
    for (const s of shapes) {
      const t = report.timings.find((t) => t.rung === r && t.shape === s);
      let cell = "";
      if (t && t.gflops != null) {
        cell = t.gflops < 1 ? t.gflops.toFixed(3) : t.gflops.toFixed(1);
        if (t.speedup != null) cell += ` · ×${t.speedup.toFixed(2)}`;
      } else if (t) cell = t.note || "";
      html += `<td>${cell}</td>`;
    }
    html += "</tr>";
  }
  return html + "</table>";
}

async function runLadder() {
  $("ladder").disabled = true;
  const op = params.get("ladder") || $("ladder-op").value;
  const lines = [];
  $("ladder-log").textContent = "";
  try {
    const json = await wasm.run_ladder(engine, op, params.get("quick") !== "0", params.get("check") === "1",
      (line) => { lines.push(line); $("ladder-log").textContent = lines.join("\n"); $("status").textContent = "ladder: " + line.trim(); });
    const out = JSON.parse(json);
    state.ladder = out.report;
    $("ladder-report").innerHTML = `<p><b>${op} ladder on ${out.report.device}</b></p>` + ladderHtml(out.report);
    state.phase = "laddered";
    $("status").textContent = "ladder done";
  } catch (e) {
    fail("Ladder failed: " + (e.message || e));
  }
  $("ladder").disabled = false;
}

$("open").addEventListener("click", openDevice);
$("ladder").addEventListener("click", runLadder);
$("bench").addEventListener("click", benchmark);
$("run").addEventListener("click", runAll);
$("shaders").addEventListener("click", checkShaders);

(async () => {
  $("open").disabled = true;
  if (!(await loadEngine())) return;
  if (params.get("autorun") === "1" || params.get("shaders") === "1" || params.get("bench") === "1" || params.has("ladder")) {
    if (!(await openDevice())) return;
    if (params.get("shaders") === "1") await checkShaders();
    if (params.get("bench") === "1") await benchmark();
    if (params.has("ladder")) await runLadder();
    if (params.get("autorun") === "1") await runAll();
  }
})();
