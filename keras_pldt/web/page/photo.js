// Reading a photo and the Sec. 5.2 letterbox, as keras_pldt.runtime does them.
//
// readPhoto(file) -> {width, height, rgba}: the decoded photo, EXIF orientation applied,
// transparency composited on white, or a PhotoError whose message the page shows.
// letterbox(photo, size) -> {pixels: Uint8Array [S, S, 3], top, left, height, width}: the
// longer side resized to S with TensorFlow's antialiased bilinear filter (ScaleAndTranslate
// with the triangle kernel, in float32 step by step, rows then columns), rounded half to even,
// centred on 255.

export const MAX_BYTES = 50e6;
export const MAX_PIXELS = 40e6;

export class PhotoError extends Error {}

const f32 = Math.fround;

/** Round half to even, as tf.round and np.round. */
export function rint(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

function sniff(bytes) {
  const at = (i, ...values) => values.every((v, k) => bytes[i + k] === v);
  const ascii = (i, text) => at(i, ...[...text].map((c) => c.charCodeAt(0)));
  if (at(0, 0xff, 0xd8, 0xff)) return 'jpeg';
  if (at(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return 'png';
  if (ascii(0, 'GIF87a') || ascii(0, 'GIF89a')) return 'gif';
  if (ascii(0, 'RIFF') && ascii(8, 'WEBP')) return 'webp';
  if (ascii(0, 'BM')) return 'bmp';
  return null;
}

function lastIndexOf(bytes, pattern) {
  for (let i = bytes.length - pattern.length; i >= 0; i--) {
    let k = 0;
    while (k < pattern.length && bytes[i + k] === pattern[k]) k++;
    if (k === pattern.length) return i;
  }
  return -1;
}

/** Whether the file ends as its format says a whole file does. */
function complete(bytes, kind) {
  const u32 = (i) => (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16)) + bytes[i + 3] * 2 ** 24;
  if (kind === 'jpeg') {  // the end-of-image marker after the last start-of-scan
    const end = lastIndexOf(bytes, [0xff, 0xd9]);
    return end > lastIndexOf(bytes, [0xff, 0xda]);
  }
  if (kind === 'png') return lastIndexOf(bytes, [0x49, 0x45, 0x4e, 0x44]) > 8;  // IEND
  if (kind === 'gif') return bytes.lastIndexOf(0x3b) > 12;  // the trailer
  if (kind === 'webp') return bytes.length >= u32(4) + 8;
  if (kind === 'bmp') return bytes.length >= 26 && (u32(2) === 0 || bytes.length >= u32(2));
  return true;
}

function headerSize(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve([image.naturalWidth, image.naturalHeight]);
    image.onerror = () => reject(new Error('undecodable'));
    image.src = url;
  });
}

const FORMATS = 'use JPEG, PNG, WebP, GIF or BMP';

/** A File or Blob -> {width, height, rgba: Uint8ClampedArray}, or PhotoError. */
export async function readPhoto(file) {
  const name = file.name || 'photo';
  if (file.size === 0) throw new PhotoError(`${name} is empty (0 bytes)`);
  if (file.size > MAX_BYTES) {
    const mb = (file.size / 1e6).toFixed(1);
    throw new PhotoError(`${name} is ${mb} MB; the limit is ${MAX_BYTES / 1e6} MB`);
  }
  const bytes = new Uint8Array(await file.arrayBuffer());
  const kind = sniff(bytes);
  if (kind === null) throw new PhotoError(`${name} is not an image this page can read (${FORMATS})`);
  if (!complete(bytes, kind)) {
    throw new PhotoError(`${name} is truncated: the ${kind.toUpperCase()} data ends early`);
  }
  const url = URL.createObjectURL(file);
  let width, height;
  try {
    [width, height] = await headerSize(url);
  } catch {
    throw new PhotoError(`${name} could not be decoded as ${kind.toUpperCase()} (${FORMATS})`);
  } finally {
    URL.revokeObjectURL(url);
  }
  if (!width || !height) throw new PhotoError(`${name} has no pixels`);
  if (width * height > MAX_PIXELS) {
    const mp = ((width * height) / 1e6).toFixed(1);
    throw new PhotoError(
      `${name} is ${width} × ${height} = ${mp} megapixels; the limit is ${MAX_PIXELS / 1e6} megapixels`);
  }
  let bitmap;
  try {  // EXIF orientation applied and no colour management, as PIL reads the file
    bitmap = await createImageBitmap(file, {
      imageOrientation: 'from-image', colorSpaceConversion: 'none', premultiplyAlpha: 'premultiply',
    });
  } catch {
    throw new PhotoError(`${name} could not be decoded as ${kind.toUpperCase()} (${FORMATS})`);
  }
  try {
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const context = canvas.getContext('2d', {willReadFrequently: true, alpha: false});
    if (!context) throw new Error('no canvas');
    context.fillStyle = '#ffffff';  // transparency on white
    context.fillRect(0, 0, bitmap.width, bitmap.height);
    context.drawImage(bitmap, 0, 0);
    const data = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
    return {width: bitmap.width, height: bitmap.height, rgba: data};
  } catch {
    throw new PhotoError(
      `${name} (${width} × ${height}) is too large for this browser's canvas; try a smaller photo`);
  } finally {
    bitmap.close();
  }
}

/** ScaleAndTranslate's spans of the triangle kernel: start and weights of each output pixel. */
function spans(outSize, inSize, scale) {
  const invScale = f32(1 / scale);
  const kernelScale = Math.max(invScale, 1);
  const oneOver = f32(1 / kernelScale);
  const spanSize = Math.min(2 * Math.ceil(kernelScale) + 1, inSize);
  const starts = new Int32Array(outSize);
  const weights = new Float32Array(outSize * spanSize);
  for (let x = 0; x < outSize; x++) {
    const sample = f32(f32(x + 0.5) * invScale);
    if (sample < 0 || sample > inSize) continue;
    let start = Math.ceil(f32(f32(sample - kernelScale) - 0.5));
    let end = Math.floor(f32(f32(sample + kernelScale) - 0.5));
    start = Math.min(Math.max(start, 0), inSize - 1);
    end = Math.min(Math.max(end, 0), inSize - 1) + 1;
    const temp = [];
    let total = 0;
    for (let source = start; source < end; source++) {
      const position = Math.abs(f32(f32(f32(source + 0.5) - sample) * oneOver));
      const weight = position < 1 ? f32(1 - position) : 0;
      total = f32(total + weight);
      temp.push(weight);
    }
    if (Math.abs(total) >= 1000 * 1.1754943508222875e-38) {
      const inverse = f32(1 / total);
      temp.forEach((w, k) => { weights[x * spanSize + k] = f32(w * inverse); });
    }
    starts[x] = start;
  }
  return {starts, weights, spanSize};
}

/** tf.image.resize(rgba's RGB, [newHeight, newWidth], 'bilinear', antialias=True): float32. */
export function resize(photo, newHeight, newWidth) {
  const {width, height, rgba} = photo;
  const rows = spans(newHeight, height, f32(newHeight / height));
  const cols = spans(newWidth, width, f32(newWidth / width));
  const middle = new Float32Array(newHeight * width * 3);  // rows first, as TensorFlow
  for (let y = 0; y < newHeight; y++) {
    const start = rows.starts[y];
    const real = Math.min(start + rows.spanSize, height) - start;
    const out = y * width * 3;
    for (let k = 0; k < real; k++) {
      const weight = rows.weights[y * rows.spanSize + k];
      let pixel = (start + k) * width * 4;
      for (let x = 0, o = out; x < width; x++, pixel += 4, o += 3) {
        middle[o] += f32(rgba[pixel] * weight);
        middle[o + 1] += f32(rgba[pixel + 1] * weight);
        middle[o + 2] += f32(rgba[pixel + 2] * weight);
      }
    }
  }
  const result = new Float32Array(newHeight * newWidth * 3);
  for (let y = 0; y < newHeight; y++) {
    for (let x = 0; x < newWidth; x++) {
      const start = cols.starts[x];
      const real = Math.min(start + cols.spanSize, width) - start;
      const o = (y * newWidth + x) * 3;
      for (let k = 0; k < real; k++) {
        const weight = cols.weights[x * cols.spanSize + k];
        const i = (y * width + start + k) * 3;
        result[o] += f32(weight * middle[i]);
        result[o + 1] += f32(weight * middle[i + 1]);
        result[o + 2] += f32(weight * middle[i + 2]);
      }
    }
  }
  return result;
}

/** keras_pldt.runtime.letterbox of one photo: uint8 [S, S, 3] and where the photo lies. */
export function letterbox(photo, size) {
  const scale = f32(size / Math.max(photo.height, photo.width));
  const clip = (v) => Math.min(Math.max(v, 1), size);
  const height = clip(rint(f32(photo.height * scale)));
  const width = clip(rint(f32(photo.width * scale)));
  const resized = resize(photo, height, width);
  const top = (size - height) >> 1, left = (size - width) >> 1;
  const pixels = new Uint8Array(size * size * 3).fill(255);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        const v = resized[(y * width + x) * 3 + c];
        pixels[((top + y) * size + left + x) * 3 + c] = rint(Math.min(Math.max(v, 0), 255));
      }
    }
  }
  return {pixels, top, left, height, width};
}
