// TensorFlow.js training yardstick: the browser counterpart of benches/pytorch_yardstick.py.
//
// Trains distill's seed models (teacher: conv 64, conv 128, dense 1000; student: conv 32,
// conv 64, dense 500; each conv 3x3 'same' + ReLU + 2x2 max-pool, then dense(10)) on seeded
// random Fashion-MNIST-shaped batches (128 x 28 x 28 x 1, 10 classes) with Adam (lr 1e-3) and
// softmax cross-entropy, on the backend named in the page's query string. Each model runs
// `warmup` untimed steps, then `steps` timed ones; a step is forward, loss, backward and Adam
// update, and ends when the loss and the last layer's updated bias have been read back, so
// all the step's work has finished. Only the steps themselves are timed.
//
// The result is written as JSON into <pre id="result"> and document.title becomes "done"
// (or "error", with the message in the JSON), for run.py to read.

import { checkConv2DBackpropFilter, kernelStats, registerConv2DBackpropFilterWasm }
  from './conv2d_backprop_filter_wasm.js';

const tf = window.tf;

const ARCHS = { teacher: [64, 128, 1000], student: [32, 64, 500] };
const BACKENDS = ['webgpu', 'wasm', 'cpu'];
const CLASSES = 10;
const SIDE = 28;
const BATCH = 128;
const LEARNING_RATE = 1e-3;

function setStatus(text) {
  document.getElementById('status').textContent = text;
  document.title = `running: ${text}`;
}

function finish(result) {
  document.getElementById('result').textContent = JSON.stringify(result, null, 2);
  document.getElementById('status').textContent = result.ok ? 'done' : `error: ${result.error}`;
  document.title = result.ok ? 'done' : 'error';
}

function intParam(query, name, fallback, min, max) {
  const raw = query.get(name);
  if (raw === null) return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new Error(`query parameter ${name}=${raw} must be an integer in [${min}, ${max}]`);
  }
  return v;
}

function readParams() {
  const query = new URLSearchParams(location.search);
  const backend = query.get('backend');
  if (!BACKENDS.includes(backend)) {
    throw new Error(`query parameter backend=${backend} must be one of ${BACKENDS.join(', ')}`);
  }
  const models = (query.get('models') ?? 'teacher,student').split(',').filter((m) => m !== '');
  for (const m of models) {
    if (!(m in ARCHS)) throw new Error(`unknown model '${m}' in models=; known: ${Object.keys(ARCHS).join(', ')}`);
  }
  if (models.length === 0) throw new Error('models= names no model');
  return {
    backend,
    models,
    steps: intParam(query, 'steps', 3, 1, 1000),
    warmup: intParam(query, 'warmup', 1, 0, 100),
  };
}

/**
 * Lets the page repaint and answer the driver between steps (not timed). A wasm step keeps the
 * main thread busy for seconds, and the driver needs several round trips to read the title,
 * so the pause is a few tens of milliseconds rather than a bare macrotask.
 */
function yieldToBrowser() {
  return new Promise((resolve) => setTimeout(resolve, 50));
}

/** Adapter facts from WebGPU itself, or null when there is no adapter. */
async function webgpuAdapterInfo() {
  if (!navigator.gpu) return null;
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) return null;
  const info = adapter.info ?? (adapter.requestAdapterInfo ? await adapter.requestAdapterInfo() : {});
  return {
    vendor: info.vendor, architecture: info.architecture, device: info.device,
    description: info.description, is_fallback_adapter: adapter.isFallbackAdapter ?? info.isFallbackAdapter,
  };
}

/** Selects and initialises the backend; returns facts about it for the result. */
async function initBackend(name) {
  const facts = {};
  if (name === 'webgpu') {
    if (!navigator.gpu) throw new Error('WebGPU is not available: navigator.gpu is undefined (is --enable-unsafe-webgpu set?)');
    facts.adapter_info = await webgpuAdapterInfo();
    if (!facts.adapter_info) throw new Error('WebGPU is available but navigator.gpu.requestAdapter() returned no adapter');
  }
  if (name === 'wasm') {
    // Single-threaded: no SharedArrayBuffer or cross-origin isolation needed, and the figure
    // is comparable with one CPU thread. The .wasm binaries are served next to the JS.
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
    tf.wasm.setWasmPaths(new URL('node_modules/@tensorflow/tfjs-backend-wasm/dist/', location.href).href);
    registerConv2DBackpropFilterWasm(tf);
  }
  if (!(await tf.setBackend(name))) {
    throw new Error(`tf.setBackend('${name}') failed; the browser console has TF.js's reason`);
  }
  await tf.ready();
  if (name === 'wasm') {
    facts.wasm = {
      simd: await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'),
      multithread: await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT'),
      threads: tf.wasm.getThreadsCount(),
      cross_origin_isolated: window.crossOriginIsolated === true,
    };
    facts.conv2d_backprop_filter_check = await checkConv2DBackpropFilter(tf);
  }
  return facts;
}

/** The seed architecture as a tf.Sequential on NHWC input, seeded initial weights. */
function buildModel(arch, seed) {
  const [c1, c2, hidden] = ARCHS[arch];
  let next = seed;
  const kernelInitializer = () => tf.initializers.glorotUniform({ seed: next++ });
  return tf.sequential({
    name: arch,
    layers: [
      tf.layers.conv2d({ inputShape: [SIDE, SIDE, 1], filters: c1, kernelSize: 3, padding: 'same',
        activation: 'relu', kernelInitializer: kernelInitializer() }),
      tf.layers.maxPooling2d({ poolSize: 2, strides: 2 }),
      tf.layers.conv2d({ filters: c2, kernelSize: 3, padding: 'same', activation: 'relu',
        kernelInitializer: kernelInitializer() }),
      tf.layers.maxPooling2d({ poolSize: 2, strides: 2 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: hidden, activation: 'relu', kernelInitializer: kernelInitializer() }),
      tf.layers.dense({ units: CLASSES, kernelInitializer: kernelInitializer() }),
    ],
  });
}

/** Times `warmup` + `steps` training steps of `arch`; returns one result row. */
async function trainRow(arch, steps, warmup) {
  const model = buildModel(arch, 1);
  const optimizer = tf.train.adam(LEARNING_RATE);
  const vars = model.trainableWeights.map((w) => w.read());
  const lastBias = vars[vars.length - 1];
  // Two fixed batches, alternated, as the PyTorch yardstick does.
  const xs = [0, 1].map((i) => tf.randomNormal([BATCH, SIDE, SIDE, 1], 0, 1, 'float32', 10 + i));
  const ys = [0, 1].map((i) => tf.tidy(() =>
    tf.oneHot(tf.randomUniform([BATCH], 0, CLASSES, 'int32', 20 + i), CLASSES).toFloat()));

  const params = vars.reduce((n, v) => n + v.size, 0);
  const stepSeconds = [];
  const losses = [];
  let kernelSeconds = 0;
  try {
    for (let i = 0; i < warmup + steps; i++) {
      const timed = i >= warmup;
      setStatus(`${arch} ${timed ? `step ${i - warmup + 1}/${steps}` : `warm-up ${i + 1}/${warmup}`}`);
      await yieldToBrowser();
      kernelStats.seconds = 0;
      const t0 = performance.now();
      const loss = optimizer.minimize(
        () => tf.losses.softmaxCrossEntropy(ys[i % 2], model.apply(xs[i % 2], { training: true })),
        true, vars);
      const [lossValue] = await Promise.all([loss.data(), lastBias.data()]);
      const seconds = (performance.now() - t0) / 1000;
      loss.dispose();
      if (!Number.isFinite(lossValue[0])) throw new Error(`${arch}: loss is ${lossValue[0]} at step ${i}`);
      losses.push(lossValue[0]);
      if (timed) {
        stepSeconds.push(seconds);
        kernelSeconds += kernelStats.seconds;
      }
    }
  } finally {
    tf.dispose([...xs, ...ys]);
    optimizer.dispose();
    model.dispose();
  }
  const seconds = stepSeconds.reduce((a, b) => a + b, 0);
  const row = {
    name: `${arch} train b${BATCH}`,
    model: arch,
    batch: BATCH,
    warmup_steps: warmup,
    steps,
    seconds,
    images_per_second: (BATCH * steps) / seconds,
    step_seconds: stepSeconds,
    params,
    loss_first: losses[0],
    loss_last: losses[losses.length - 1],
  };
  if (tf.getBackend() === 'wasm') row.js_conv2d_backprop_filter_seconds = kernelSeconds;
  return row;
}

async function main() {
  const started = performance.now();
  const params = readParams();
  const result = {
    ok: false,
    backend: params.backend,
    tfjs_version: tf.version.tfjs,
    user_agent: navigator.userAgent,
    hardware_concurrency: navigator.hardwareConcurrency,
    optimizer: `adam lr ${LEARNING_RATE}`,
    loss: 'softmax cross-entropy',
    inputs: `seeded random normal ${BATCH}x${SIDE}x${SIDE}x1, seeded random labels in [0, ${CLASSES})`,
    rows: [],
  };
  setStatus(`initialising ${params.backend}`);
  Object.assign(result, await initBackend(params.backend));
  for (const arch of params.models) {
    result.rows.push(await trainRow(arch, params.steps, params.warmup));
  }
  result.tensors_left = tf.memory().numTensors;
  result.total_seconds = (performance.now() - started) / 1000;
  result.ok = true;
  finish(result);
}

function fatal(error) {
  const e = error instanceof Error ? error : new Error(String(error?.reason ?? error));
  finish({ ok: false, error: e.message, stack: e.stack, user_agent: navigator.userAgent });
}

window.addEventListener('error', (ev) => fatal(ev.error ?? ev.message));
window.addEventListener('unhandledrejection', (ev) => fatal(ev.reason));
if (!tf || !tf.wasm || !tf.findBackendFactory('wasm') || !tf.findBackendFactory('webgpu')) {
  fatal(new Error('TF.js scripts did not load from node_modules (run `npm ci` in benches/tfjs_yardstick)'));
} else if (document.readyState === 'complete') {
  main().catch(fatal);
} else {
  // Start after the load event so that the driver's navigation returns promptly.
  window.addEventListener('load', () => setTimeout(() => main().catch(fatal), 0));
}
