// The page: the model card, photos in, the converter through LiteRT.js, products out.
// Nothing leaves the device: the photo is read, letterboxed and converted in this tab.

import {loadAndCompile, loadLiteRt, Tensor} from '@litertjs/core';

import {letterbox, MAX_BYTES, MAX_PIXELS, PhotoError, readPhoto, rint} from './photo.js';
import {$, convertAll, fail, newCard, row, showResult} from './ui.js';

const f32 = Math.fround;
const state = {card: null, model: null, size: 0, count: 0, totalMs: 0, threads: 1};

/** The input tensor's values of letterboxed uint8 pixels, as the Python runners feed them. */
function modelInput(pixels, tensor) {
  const x = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) x[i] = f32(f32(pixels[i] / 127.5) - 1);
  if (tensor.dtype === 'float32') return x;
  const scale = f32(tensor.quantization.scale), zero = tensor.quantization.zero_point;
  const [low, high] = tensor.value_range;
  const q = new Uint8Array(x.length);
  for (let i = 0; i < x.length; i++) {
    q[i] = Math.min(Math.max(rint(f32(f32(x[i] / scale) + zero)), low), high);
  }
  return q;
}

/** Model output (float, or quantized uint8) -> uint8 pixels, as keras_pldt.runtime.to_uint8_np. */
function productPixels(values, tensor) {
  const pixels = new Uint8Array(values.length);
  const quantized = tensor.dtype !== 'float32';
  const scale = quantized ? f32(tensor.quantization.scale) : 1;
  const zero = quantized ? tensor.quantization.zero_point : 0;
  for (let i = 0; i < values.length; i++) {
    const y = quantized ? f32(f32(values[i] - zero) * scale) : values[i];
    pixels[i] = rint(Math.min(Math.max(f32(f32(y + 1) * 127.5), 0), 255));
  }
  return pixels;
}

function pngUrl(rgb, size) {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = size;
  const context = canvas.getContext('2d');
  const image = context.createImageData(size, size);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    image.data[j] = rgb[i];
    image.data[j + 1] = rgb[i + 1];
    image.data[j + 2] = rgb[i + 2];
    image.data[j + 3] = 255;
  }
  context.putImageData(image, 0, 0);
  return canvas.toDataURL('image/png');
}

/** uint8 pixels [S, S, 3] -> (uint8 product [S, S, 3], milliseconds of the model). */
async function runModel(pixels) {
  const size = state.size;
  const [input, output] = [state.card.inputs[0], state.card.outputs[0]];
  const tensor = new Tensor(modelInput(pixels, input), [1, size, size, 3]);
  const start = performance.now();
  const results = await state.model.run(tensor);
  const values = results[0].toTypedArray().slice();
  const ms = performance.now() - start;
  tensor.delete();
  for (const result of results) result.delete();
  return [productPixels(values, output), ms];
}

async function convert(file) {
  const card = newCard(file.name, true);
  let photo;
  try {
    photo = await readPhoto(file);
  } catch (error) {
    const message = error instanceof PhotoError ? error.message : `${file.name}: ${error}`;
    return fail(card, message);
  }
  const size = state.size;
  const box = letterbox(photo, size);
  let product, ms;
  try {
    [product, ms] = await runModel(box.pixels);
  } catch (error) {
    return fail(card, `${file.name}: the model failed (${error})`);
  }
  state.count += 1;
  state.totalMs += ms;
  showResult(card, {
    source: pngUrl(box.pixels, size), product: pngUrl(product, size),
    download: `${(file.name || 'photo').replace(/\.[^.]*$/, '') || 'photo'}_product.png`,
    name: file.name, width: photo.width, height: photo.height, ms: ms.toFixed(1), size,
  });
  card.dataset.top = box.top;
  card.dataset.left = box.left;
  card.dataset.height = box.height;
  card.dataset.width = box.width;
  const mean = state.totalMs / state.count;
  $('latency').textContent = `${ms.toFixed(1)} ms last, ${mean.toFixed(1)} ms mean over ` +
    `${state.count} image(s) (LiteRT.js, WebAssembly, ${state.threads} thread(s))`;
}

/** Milliseconds per call of the model on a white input: the median of `runs` after `warmup`. */
async function benchmark(runs = 20, warmup = 5) {
  const pixels = new Uint8Array(state.size * state.size * 3).fill(255);
  const times = [];
  for (let i = 0; i < warmup + runs; i++) {
    const [, ms] = await runModel(pixels);
    if (i >= warmup) times.push(ms);
  }
  times.sort((a, b) => a - b);
  return {median_ms: times[Math.floor(times.length / 2)], threads: state.threads};
}

async function start() {
  const card = state.card = await (await fetch('model_card.json')).json();
  state.size = card.image_size;
  for (const [label, value] of card.web.rows) row(label, value);
  row('time per image', 'no photo yet', 'latency');
  $('limits').textContent = `Any photo up to ${MAX_BYTES / 1e6} MB and ${MAX_PIXELS / 1e6} ` +
    'megapixels. The photo is converted in this browser and sent nowhere.';
  const wanted = Number(new URLSearchParams(location.search).get('threads')) || 0;
  const threaded = self.crossOriginIsolated && wanted !== 1;
  const wasm = new URL('litert/wasm/', location.href).href;
  await loadLiteRt(wasm, {threads: threaded});
  state.threads = threaded ? wanted || navigator.hardwareConcurrency || 1 : 1;
  const options = {accelerator: 'wasm', cpuOptions: {numThreads: state.threads}};
  const started = performance.now();
  state.model = await loadAndCompile(card.file, options);
  const loadMs = performance.now() - started;
  await runModel(new Uint8Array(state.size * state.size * 3).fill(255));  // warm-up
  $('status').textContent = `model ready (${card.file}, loaded in ${loadMs.toFixed(0)} ms)`;
  for (const id of ['camera', 'files']) {
    $(id).addEventListener('change', async (event) => {
      await convertAll([...event.target.files], convert);
      event.target.value = '';
    });
  }
  window.pldt = {benchmark, letterbox, readPhoto, state};
  document.body.dataset.ready = '1';
}

start().catch((error) => {
  $('status').textContent = `the model could not be loaded: ${error}`;
  $('status').className = 'error';
  document.body.dataset.ready = 'failed';
});
