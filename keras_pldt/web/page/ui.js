// What the demo page (keras_pldt.demo, a server converts) and the web page (LiteRT.js, the
// browser converts) share: the model card's rows, a result's source and product enlarged
// without smoothing with a download, and a one-line error in place of a result.

export const $ = (id) => document.getElementById(id);

export function row(label, value, id) {
  const tr = $('info').insertRow();
  tr.insertCell().textContent = label;
  const cell = tr.insertCell();
  cell.textContent = value;
  if (id) cell.id = id;
}

function figure(src, caption, cls) {
  const fig = document.createElement('figure');
  const img = new Image();
  img.src = src;
  img.className = 'pixels ' + cls;
  img.alt = caption;
  const text = document.createElement('figcaption');
  text.textContent = caption;
  fig.append(img, text);
  return fig;
}

/** A result card for `name`, in the results list ('converting…' until it is filled). */
export function newCard(name, first = false) {
  const card = document.createElement('div');
  card.className = 'result';
  card.dataset.name = name;
  card.textContent = (name || 'photo') + ': converting…';
  if (first) $('results').prepend(card);
  else $('results').append(card);
  return card;
}

export function fail(card, message) {
  const p = document.createElement('p');
  p.className = 'error';
  p.setAttribute('role', 'alert');
  p.textContent = message;
  card.replaceChildren(p);
}

/** Fill `card`: the letterboxed source and the product (data URLs, `size` px), a download. */
export function showResult(card, {source, product, download, name, width, height, ms, size}) {
  const meta = document.createElement('div');
  meta.className = 'meta';
  const link = document.createElement('a');
  link.href = product;
  link.download = download;
  link.textContent = 'Download product PNG';
  link.className = 'download';
  meta.append(`${name} (${width} × ${height})`, document.createElement('br'),
              `${ms} ms for this image`, document.createElement('br'), link);
  card.replaceChildren(
    figure(source, `input, letterboxed to ${size} × ${size}`, 'source'),
    figure(product, `generated product, ${size} × ${size}`, 'product'), meta);
}

/** Convert `files` one after the other with `convert`. */
export async function convertAll(files, convert) {
  for (const file of files) await convert(file);
}
