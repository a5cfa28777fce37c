// Conv2DBackpropFilter for TensorFlow.js's 'wasm' backend, written in plain JavaScript.
//
// TF.js 4.22's wasm backend has no Conv2DBackpropFilter kernel, so training a conv net on it
// fails at the first backward pass. This module registers one: the filter gradient
//
//   dW[kh, kw, ci, co] = sum over b, oh, ow of  x[b, oh*sh + kh - top, ow*sw + kw - left, ci]
//                                             * dy[b, oh, ow, co]
//
// on NHWC float32 tensors, read and written directly in the wasm heap. Strides and padding
// come from TF.js's own conv geometry (backend_util.computeConv2DInfo), so 'same', 'valid'
// and explicit pads with any stride are handled; NCHW, dilations other than 1 and non-float32
// tensors are refused with an error naming the attribute.
//
// checkConv2DBackpropFilter() compares the kernel with the cpu backend's on a few shapes and
// is run by the page before it trains on wasm.

const KERNEL = 'Conv2DBackpropFilter';

/** Seconds spent inside the kernel since the last reset; the yardstick reports it per row. */
export const kernelStats = { seconds: 0, calls: 0 };

function fail(message) {
  throw new Error(`${KERNEL} (wasm, JavaScript kernel): ${message}`);
}

function conv2DBackpropFilter(tf, { inputs, backend, attrs }) {
  const t0 = performance.now();
  const { x, dy } = inputs;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs;
  if (dataFormat !== undefined && dataFormat !== 'NHWC') {
    fail(`dataFormat '${dataFormat}' is not supported, only 'NHWC'`);
  }
  if (attrs.dilations !== undefined) {
    const d = Array.isArray(attrs.dilations) ? attrs.dilations : [attrs.dilations];
    if (d.some((v) => v !== 1)) fail(`dilations ${JSON.stringify(attrs.dilations)} are not supported, only 1`);
  }
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') {
    fail(`dtypes x=${x.dtype}, dy=${dy.dtype} are not supported, only float32`);
  }
  if (x.shape.length !== 4 || dy.shape.length !== 4 || filterShape.length !== 4) {
    fail(`expects rank-4 x, dy and filterShape, got ${x.shape}, ${dy.shape}, ${filterShape}`);
  }
  const info = tf.backend_util.computeConv2DInfo(
    x.shape, filterShape, strides, 1, pad, dimRoundingMode, false, 'channelsLast');
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels,
    filterHeight, filterWidth, strideHeight, strideWidth } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const want = [batchSize, outHeight, outWidth, outChannels];
  if (dy.shape.some((v, i) => v !== want[i])) {
    fail(`dy shape ${dy.shape} does not match the convolution's output shape ${want}`);
  }

  // Allocate first: allocation may grow the wasm heap, which detaches earlier views.
  const out = backend.makeOutput(filterShape, 'float32');
  const xs = backend.typedArrayFromHeap(x);
  const dys = backend.typedArrayFromHeap(dy);
  const dw = backend.typedArrayFromHeap(out);
  dw.fill(0);

  // For every output pixel, add the outer product of the input pixels under each filter tap
  // (inChannels) and the pixel's dy (outChannels) into dW. The innermost loop runs along
  // outChannels, contiguous in both dW and dy.
  for (let b = 0; b < batchSize; b++) {
    for (let oh = 0; oh < outHeight; oh++) {
      for (let ow = 0; ow < outWidth; ow++) {
        const dyBase = ((b * outHeight + oh) * outWidth + ow) * outChannels;
        for (let kh = 0; kh < filterHeight; kh++) {
          const ih = oh * strideHeight + kh - top;
          if (ih < 0 || ih >= inHeight) continue;
          for (let kw = 0; kw < filterWidth; kw++) {
            const iw = ow * strideWidth + kw - left;
            if (iw < 0 || iw >= inWidth) continue;
            const xBase = ((b * inHeight + ih) * inWidth + iw) * inChannels;
            const wBase = (kh * filterWidth + kw) * inChannels * outChannels;
            for (let ci = 0; ci < inChannels; ci++) {
              const xv = xs[xBase + ci];
              const row = wBase + ci * outChannels;
              for (let co = 0; co < outChannels; co++) {
                dw[row + co] += xv * dys[dyBase + co];
              }
            }
          }
        }
      }
    }
  }
  kernelStats.seconds += (performance.now() - t0) / 1000;
  kernelStats.calls += 1;
  return out;
}

/** Registers the kernel for the 'wasm' backend (once; a second call is a no-op). */
export function registerConv2DBackpropFilterWasm(tf) {
  if (tf.getKernel(KERNEL, 'wasm') !== undefined) return;
  tf.registerKernel({
    kernelName: KERNEL,
    backendName: 'wasm',
    kernelFunc: (args) => conv2DBackpropFilter(tf, args),
  });
}

/** Deterministic values in [-1, 1) from a small linear congruential generator. */
function pseudoRandom(n, seed) {
  const v = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    v[i] = s / 2 ** 31 - 1;
  }
  return v;
}

async function runOn(tf, backendName, c) {
  if (!(await tf.setBackend(backendName))) throw new Error(`the ${backendName} backend is not available for the ${KERNEL} check`);
  return tf.tidy(() => {
    const x = tf.tensor4d(c.xData, c.xShape);
    const dy = tf.tensor4d(c.dyData, c.dyShape);
    const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', dimRoundingMode: undefined,
      filterShape: c.filterShape };
    return tf.engine().runKernel(KERNEL, { x, dy }, attrs).dataSync().slice();
  });
}

/**
 * Compares the wasm kernel with the cpu backend's Conv2DBackpropFilter on a few shapes (the
 * models' own 'same' stride-1 case and two others) and checks that NCHW is refused. The wasm
 * backend must have been initialised already; leaves 'wasm' as the active backend. Throws if any comparison fails; returns a summary.
 */
export async function checkConv2DBackpropFilter(tf) {
  const cases = [
    { name: 'same s1 3x3', xShape: [2, 7, 7, 3], filterShape: [3, 3, 3, 5], strides: 1, pad: 'same' },
    { name: 'valid s2 3x3', xShape: [2, 9, 8, 4], filterShape: [3, 3, 4, 6], strides: 2, pad: 'valid' },
    { name: 'pad 1 s[1,2] 2x3', xShape: [1, 6, 7, 2], filterShape: [2, 3, 2, 3], strides: [1, 2], pad: 1 },
  ];
  const results = [];
  for (const [i, c] of cases.entries()) {
    const info = tf.backend_util.computeConv2DInfo(c.xShape, c.filterShape, c.strides, 1, c.pad);
    c.dyShape = [info.batchSize, info.outHeight, info.outWidth, info.outChannels];
    c.xData = pseudoRandom(c.xShape.reduce((a, b) => a * b), 11 + i);
    c.dyData = pseudoRandom(c.dyShape.reduce((a, b) => a * b), 101 + i);
    const want = await runOn(tf, 'cpu', c);
    const got = await runOn(tf, 'wasm', c);
    let maxAbs = 0;
    let maxDiff = 0;
    for (let k = 0; k < want.length; k++) {
      maxAbs = Math.max(maxAbs, Math.abs(want[k]));
      maxDiff = Math.max(maxDiff, Math.abs(want[k] - got[k]));
    }
    const ok = got.length === want.length && maxDiff <= 1e-5 * Math.max(1, maxAbs);
    results.push({ case: c.name, max_abs_diff: maxDiff, max_abs: maxAbs, ok });
    if (!ok) {
      throw new Error(`${KERNEL} check '${c.name}': wasm differs from cpu by ${maxDiff} (max |value| ${maxAbs})`);
    }
  }
  let refused = false;
  await tf.setBackend('wasm');
  try {
    tf.tidy(() => tf.engine().runKernel(KERNEL,
      { x: tf.zeros([1, 1, 4, 4]), dy: tf.zeros([1, 2, 4, 4]) },
      { strides: 1, pad: 'same', dataFormat: 'NCHW', filterShape: [3, 3, 1, 2] }));
  } catch (e) {
    refused = /dataFormat 'NCHW' is not supported/.test(String(e.message));
  }
  if (!refused) throw new Error(`${KERNEL} check: an NCHW call was not refused with a clear error`);
  kernelStats.seconds = 0;
  kernelStats.calls = 0;
  return { cases: results, refuses_nchw: true };
}
