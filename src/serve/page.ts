import { escapeHtml } from '../report/escape.js';

/**
 * The detector's web page: pick or drop an image, see the verdict (the bundle's scorer, its score
 * and its threshold), the class probabilities (as `setar classify`) and the patch map over the
 * image on an absolute scale with its legend (redder = the patch looks less like any ID class). Plain
 * HTML and script, no external resources. By default the server scores the image (`POST
 * /v1/score`); with "score in this browser" checked the page loads `/client.js` (onnxruntime-web:
 * WebGPU where the browser gives a GPU adapter, else wasm) and the bundle from `/bundle/`, and
 * scores it itself, saying which in `#status` and `#result[data-backend]`. Either way the raw verdict is left
 * as JSON in `#result[data-verdict]` and its origin in `data-source` ("server" or "browser").
 * With `keyRequired` (the server has an API key) the page asks for the key and sends it with the
 * score request and the bundle downloads.
 */
export function detectorPage(labels: readonly string[], options: { keyRequired?: boolean } = {}): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>setar detector</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<style>
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:900px}
[hidden]{display:none !important}
#drop{display:block;box-sizing:border-box;border:2px dashed #888;border-radius:8px;padding:24px;margin:16px 0;text-align:center;cursor:pointer}
#drop.over{background:#eef}
#result{display:flex;gap:24px;margin-top:20px;align-items:flex-start}
#verdict{font-size:1.4em;font-weight:bold;margin:0 0 8px}
.ood{color:#b00}.id{color:#070}
canvas{border:1px solid #ccc;image-rendering:pixelated}
td,th{padding:2px 10px 2px 0;text-align:left}
th{font-weight:normal;color:#555}
#error{color:#b00}
#legend{display:flex;align-items:center;gap:6px;font-size:.85em;color:#444;margin-top:6px}
#legend-bar{width:120px;height:10px;border:1px solid #ccc;background:linear-gradient(to right,rgba(220,0,0,0),rgba(220,0,0,.6))}
</style></head>
<body>
<h1>setar detector</h1>
<p>Classes: ${labels.map((l) => escapeHtml(l)).join(', ')}. An image whose score is above the bundle's threshold is out of distribution.</p>
<label id="drop">Drop an image here, or click to choose one<input id="file" type="file" accept="image/*" hidden></label>
${options.keyRequired ? '<p><label>API key <input id="api-key" type="password" autocomplete="off"></label> (this server needs one)</p>\n' : ''}<p><label><input id="in-browser" type="checkbox"> score in this browser (onnxruntime-web: WebGPU where this browser has a GPU adapter, else WebAssembly; the model is downloaded once)</label> <span id="status"></span></p>
<p id="error" role="alert"></p>
<div id="result" hidden>
  <div>
    <canvas id="view" width="336" height="336" aria-label="image with the patch map"></canvas>
    <div id="legend"><span>patch like one class (100%)</span><span id="legend-bar"></span><span id="legend-low">like none of them (1/${labels.length})</span></div>
  </div>
  <div><p id="verdict"></p><p id="score"></p><table id="top"><caption>class probabilities (softmax of the logits, as setar classify)</caption></table></div>
</div>
<script>
const drop = document.getElementById('drop'), input = document.getElementById('file');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); if (e.dataTransfer.files[0]) score(e.dataTransfer.files[0]); });
input.addEventListener('change', () => { if (input.files[0]) score(input.files[0]); });
let client = null;
function auth() { const k = document.getElementById('api-key'); return k && k.value ? { Authorization: 'Bearer ' + k.value } : {}; }
function fail(message) { document.getElementById('error').textContent = message; document.getElementById('result').hidden = true; document.getElementById('status').textContent = ''; }
async function score(file) {
  document.getElementById('error').textContent = '';
  const result = document.getElementById('result');
  // the last image's verdict goes before this one is scored: an error never shows beside it
  result.hidden = true;
  delete result.dataset.verdict;
  delete result.dataset.source;
  delete result.dataset.backend;
  let body, source;
  if (document.getElementById('in-browser').checked) {
    source = 'browser';
    const status = document.getElementById('status');
    try {
      status.textContent = 'scoring in this browser…';
      if (!client) client = import('/client.js').then((m) => m.loadClientDetector('/bundle/', '/ort/', { headers: auth() }));
      const c = await client;
      body = await c.scoreFile(file);
      result.dataset.backend = c.backend;
      status.textContent = 'scored in this browser with ' + (c.backend === 'webgpu' ? 'WebGPU' : 'WebAssembly (CPU)') + ': ' + c.backendReason;
    } catch (e) {
      client = null;
      return fail('in-browser scoring failed: ' + (e && e.message ? e.message : String(e)));
    }
  } else {
    source = 'server';
    const res = await fetch('/v1/score', { method: 'POST', headers: { 'Content-Type': file.type || 'application/octet-stream', ...auth() }, body: file });
    body = await res.json();
    if (!res.ok) return fail(body.error);
  }
  const img = new Image();
  img.onload = () => { draw(img, body); result.dataset.source = source; result.dataset.verdict = JSON.stringify(body); };
  img.src = URL.createObjectURL(file);
}
function draw(img, v) {
  const c = document.getElementById('view'), g = c.getContext('2d');
  g.clearRect(0, 0, c.width, c.height);
  g.drawImage(img, 0, 0, c.width, c.height);
  // absolute scale: a patch's highest class probability p in [1/C, 1] → red from none (p = 1) to full (p = 1/C)
  const n = v.patch_probability.length, classes = ${labels.length};
  for (let r = 0; r < n; r++) for (let q = 0; q < n; q++) {
    const t = Math.min(1, Math.max(0, (1 - v.patch_probability[r][q]) / (1 - 1 / classes)));
    g.fillStyle = 'rgba(220,0,0,' + (0.6 * t).toFixed(3) + ')';
    g.fillRect(q * c.width / n, r * c.height / n, c.width / n, c.height / n);
  }
  c.dataset.patches = String(n * n);
  const verdict = document.getElementById('verdict');
  verdict.textContent = v.ood ? 'Out of distribution' : 'In distribution: ' + v.label;
  verdict.className = v.ood ? 'ood' : 'id';
  document.getElementById('score').textContent = v.scorer + ' ' + v.score.toFixed(4) + ' (lower = more in-distribution); threshold for ' + v.scorer + ' (set on ID validation images): ' + v.threshold.toFixed(4) + ', above it is out of distribution';
  const top = document.getElementById('top'), caption = top.querySelector('caption');
  top.replaceChildren(caption, ...v.top.map((t) => { const tr = document.createElement('tr'); const a = document.createElement('td'); a.textContent = t.label; const b = document.createElement('td'); b.textContent = (100 * t.prob).toFixed(1) + '%'; tr.append(a, b); return tr; }));
  document.getElementById('result').hidden = false;
}
</script>
</body></html>
`;
}
