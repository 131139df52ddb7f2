// repmedsam-ov serve: the page. Plain JavaScript on a canvas, no build step and nothing from the network but
// this server's API. The server holds the case, its objects and their masks; the page shows one slice at a
// time and sends boxes. Image coordinates are pixels of the model frame (x right, y down, z slice).
"use strict";

const TOKEN = document.querySelector('meta[name="repmedsam-token"]').content;
const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const imageLayer = document.createElement("canvas");
const labelLayer = document.createElement("canvas");

const S = {
  cases: [], caseId: null, meta: null, z: 0, objects: [], version: -1, selected: null, redraw: false,
  pixels: null, labels: null, view: { scale: 1, ox: 0, oy: 0 }, display: { low: 0, high: 255 },
  drag: null, job: null, busy: 0, slicesWanted: 0,
};

// --- the server --------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  busy(+1);
  try {
    const response = await fetch(path, {
      method, headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if ((response.headers.get("Content-Type") || "").startsWith("application/octet-stream")) {
      const shape = response.headers.get("X-Shape").split(",").map(Number);
      const buffer = await response.arrayBuffer();
      const data = response.headers.get("X-Dtype") === "uint16" ? new Uint16Array(buffer) : new Uint8Array(buffer);
      return { shape, data };
    }
    const reply = await response.json();
    if (!response.ok) throw new ApiError(response.status, reply.error || response.statusText);
    return reply;
  } finally {
    busy(-1);
  }
}

function busy(delta) {
  S.busy += delta;
  document.body.dataset.busy = String(S.busy);
}

function say(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

function failed(e) {
  if (e instanceof ApiError && e.status === 409) return;  // superseded or cancelled: a newer request answers
  say(e.message || String(e), true);
}

// --- cases and objects -------------------------------------------------------------------------------------

async function loadCases() {
  const reply = await api("GET", "/api/cases");
  S.cases = reply.cases;
  const info = reply.info || {};
  $("info").textContent = info.model ? `model ${info.model} (${info.precision}); output folder ${info.output}/` : "";
  renderCases();
}

function renderCases() {
  const list = $("cases");
  list.replaceChildren(...S.cases.map((c) => {
    const li = document.createElement("li");
    li.textContent = c.name;
    li.title = `${c.kind}: saves ${c.output}`;
    li.dataset.id = c.id;
    li.classList.toggle("current", c.id === S.caseId);
    li.classList.toggle("saved", c.saved);
    li.addEventListener("click", () => openCase(c.id).catch(failed));
    return li;
  }));
}

async function openCase(id) {
  say("opening…");
  const meta = await api("POST", `/api/cases/${id}/open`);
  Object.assign(S, { caseId: id, meta, selected: null, redraw: false, version: -1 });
  const [depth, height, width] = meta.shape;
  imageLayer.width = labelLayer.width = width;
  imageLayer.height = labelLayer.height = height;
  S.z = Math.floor(depth / 2);
  $("case-tools").hidden = false;
  $("case-name").textContent = meta.name;
  $("case-note").textContent = meta.note + (meta.box_note ? `; box file: ${meta.box_note}` : "");
  $("window-row").hidden = meta.window === null;
  $("walk-row").hidden = $("slice-bar").hidden = meta.dims !== 3;
  $("file-boxes").disabled = meta.file_boxes === null;
  $("slice").max = depth - 1;
  $("z-min").max = $("z-max").max = depth - 1;
  $("z-min").value = Math.max(0, S.z - 5);
  $("z-max").value = Math.min(depth - 1, S.z + 5);
  fitView();
  applyState(meta);
  renderCases();
  await showSlice(S.z);
  say(`${meta.name}: ${meta.shape.slice(meta.dims === 3 ? 0 : 1).join(" × ")}; draw a box`);
}

function applyState(reply) {
  S.objects = reply.objects;
  $("undo").disabled = !reply.can_undo;
  if (S.selected !== null && !S.objects.some((o) => o.id === S.selected)) S.selected = null;
  renderObjects();
  if (reply.version !== S.version) {
    S.version = reply.version;
    refreshLabels().catch(failed);
  }
}

function colour(label) {  // the overlay PNGs' palette: hues by the golden ratio
  const hue = ((label - 1) * 0.618033988749895 % 1) * 360;
  return `hsl(${hue.toFixed(1)}, 86%, 50%)`;
}

function renderObjects() {
  $("objects").replaceChildren(...S.objects.map((o, i) => {
    const li = document.createElement("li");
    li.classList.toggle("current", o.id === S.selected);
    li.dataset.id = o.id;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour(o.label);
    const label = document.createElement("input");
    Object.assign(label, { type: "number", min: 1, max: 65535, value: o.label, title: "label" });
    label.addEventListener("change", () => changeLabel(o.id, Number(label.value)).catch(failed));
    label.addEventListener("click", (e) => e.stopPropagation());
    const text = document.createElement("span");
    text.className = "grow";
    const where = o.slices ? (o.slices[0] === o.slices[1] ? ` z ${o.slices[0]}` : ` z ${o.slices[0]}–${o.slices[1]}`) : "";
    text.textContent = `${i < 9 ? i + 1 + ". " : ""}${o.voxels ? o.voxels + " px" : "empty"}${S.meta.dims === 3 ? where : ""}`;
    const remove = document.createElement("button");
    remove.textContent = "✕";
    remove.title = "delete (Del)";
    remove.addEventListener("click", (e) => { e.stopPropagation(); deleteObject(o.id).catch(failed); });
    li.append(swatch, label, text, remove);
    li.addEventListener("click", () => select(o.id));
    return li;
  }));
  draw();
}

function select(id) {
  S.selected = id;
  S.redraw = false;
  const obj = S.objects.find((o) => o.id === id);
  if (obj && obj.slices && S.meta.dims === 3 && (S.z < obj.slices[0] || S.z > obj.slices[1])) showSlice(obj.slices[0]);
  renderObjects();
}

async function submitBox(box) {
  const redraw = S.redraw && S.selected !== null;
  S.redraw = false;
  const body = { box, z: S.meta.dims === 3 ? S.z : undefined };
  say(redraw ? "redrawing…" : "segmenting…");
  const started = performance.now();
  const reply = redraw
    ? await api("PATCH", `/api/cases/${S.caseId}/objects/${S.selected}`, body)
    : await api("POST", `/api/cases/${S.caseId}/objects`, body);
  S.selected = reply.object.id;
  applyState(reply);
  say(`object ${reply.object.label}: ${reply.object.voxels} px (${Math.round(performance.now() - started)} ms)`);
}

async function changeLabel(id, label) {
  applyState(await api("PATCH", `/api/cases/${S.caseId}/objects/${id}`, { label }));
}

async function deleteObject(id) {
  applyState(await api("DELETE", `/api/cases/${S.caseId}/objects/${id}`));
  say("deleted");
}

async function undo() {
  applyState(await api("POST", `/api/cases/${S.caseId}/undo`));
  say("undone");
}

async function save() {
  const reply = await api("POST", `/api/cases/${S.caseId}/save`);
  applyState(reply);
  const entry = S.cases.find((c) => c.id === S.caseId);
  if (entry) entry.saved = true;
  renderCases();
  say(`saved ${reply.saved.split(/[\\/]/).pop()} to the output folder`);
  document.body.dataset.saved = reply.saved;
}

async function loadSaved() {
  applyState(await api("POST", `/api/cases/${S.caseId}/load`));
  say(`loaded ${S.objects.length} label(s) from the output folder`);
}

async function setWindow(value) {
  if (value === "custom") {
    value = prompt("CT window as WIDTH,LEVEL in HU", S.meta.window.join(","));
    if (!value) return;
  }
  const meta = await api("POST", `/api/cases/${S.caseId}/window`, { window: value });
  S.meta = meta;
  applyState(meta);
  await showSlice(S.z);
  say(`window ${meta.window.join(", ")}: boxes from now on see it`);
}

// --- jobs: propagation and the box file --------------------------------------------------------------------

async function runJob(start, what) {
  if (S.job) return say("a job is running; Esc cancels it", true);
  const job = await start();
  S.job = job.id;
  $("job").hidden = false;
  try {
    for (;;) {
      const state = await api("GET", `/api/jobs/${job.id}`);
      $("job-progress").max = Math.max(state.total, 1);
      $("job-progress").value = state.steps;
      say(`${what}: ${state.steps} of ${state.total} slices`);
      if (state.state !== "queued" && state.state !== "running") {
        applyState(await api("GET", `/api/cases/${S.caseId}/objects`));
        say(state.state === "done" ? `${what}: done` : `${what}: ${state.message || state.state}`,
          state.state === "failed");
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  } finally {
    S.job = null;
    $("job").hidden = true;
  }
}

function propagate() {
  if (S.selected === null) return say("select an object (click it, or draw one) first", true);
  const body = { z_min: Number($("z-min").value), z_max: Number($("z-max").value) };
  return runJob(() => api("POST", `/api/cases/${S.caseId}/objects/${S.selected}/walk`, body), "propagating");
}

function fileBoxes() {
  if (S.objects.length && !confirm("Replace the objects by the box file's boxes?")) return;
  return runJob(() => api("POST", `/api/cases/${S.caseId}/file-boxes`), "boxes from file");
}

async function cancel() {
  if (S.job) await api("POST", `/api/jobs/${S.job}/cancel`);
}

// --- slices ------------------------------------------------------------------------------------------------

async function showSlice(z) {
  if (!S.meta) return;
  z = Math.max(0, Math.min(S.meta.shape[0] - 1, z));
  const wanted = ++S.slicesWanted;  // a newer slice request makes this one's answer stale
  const pixels = await api("GET", `/api/cases/${S.caseId}/pixels/${z}`);
  if (wanted !== S.slicesWanted) return;
  S.z = z;
  S.pixels = pixels;
  $("slice").value = z;
  $("slice-label").textContent = `slice ${z} / ${S.meta.shape[0] - 1}`;
  paintImage();
  await refreshLabels();
}

async function refreshLabels() {
  if (!S.meta) return;
  const z = S.z;
  const labels = await api("GET", `/api/cases/${S.caseId}/labels/${z}`);
  if (z !== S.z) return;
  S.labels = labels;
  paintLabels();
}

function paintImage() {
  const [height, width] = S.pixels.shape;
  const channels = S.pixels.shape[2] || 1;
  const image = new ImageData(width, height);
  const { low, high } = S.display;
  const lut = new Uint8ClampedArray(256);
  for (let v = 0; v < 256; v++) lut[v] = ((v - low) / Math.max(high - low, 1)) * 255;
  const src = S.pixels.data, dst = image.data;
  for (let i = 0, j = 0; i < width * height; i++, j += channels) {
    dst[4 * i] = lut[src[j]];
    dst[4 * i + 1] = lut[src[j + (channels === 3 ? 1 : 0)]];
    dst[4 * i + 2] = lut[src[j + (channels === 3 ? 2 : 0)]];
    dst[4 * i + 3] = 255;
  }
  imageLayer.getContext("2d").putImageData(image, 0, 0);
  draw();
}

function paintLabels() {
  const [height, width] = S.labels.shape;
  const image = new ImageData(width, height);
  const rgb = new Map();
  const probe = document.createElement("canvas").getContext("2d");
  const src = S.labels.data, dst = image.data;
  for (let i = 0; i < width * height; i++) {
    const label = src[i];
    if (!label) continue;
    if (!rgb.has(label)) {
      probe.fillStyle = colour(label);
      const hex = probe.fillStyle;  // the browser normalises it to #rrggbb
      rgb.set(label, [1, 3, 5].map((k) => parseInt(hex.slice(k, k + 2), 16)));
    }
    const [r, g, b] = rgb.get(label);
    dst[4 * i] = r; dst[4 * i + 1] = g; dst[4 * i + 2] = b; dst[4 * i + 3] = 115;
  }
  labelLayer.getContext("2d").putImageData(image, 0, 0);
  draw();
}

// --- view --------------------------------------------------------------------------------------------------

function resize() {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(canvas.clientWidth * ratio);
  canvas.height = Math.round(canvas.clientHeight * ratio);
  draw();
}

function fitView() {
  if (!S.meta) return;
  const [, height, width] = S.meta.shape;
  const bar = S.meta.dims === 3 ? 40 * (window.devicePixelRatio || 1) : 0;
  const scale = 0.96 * Math.min(canvas.width / width, (canvas.height - bar) / height);
  S.view = { scale, ox: (canvas.width - width * scale) / 2, oy: (canvas.height - bar - height * scale) / 2 };
  draw();
}

function zoom(factor, cx = canvas.width / 2, cy = canvas.height / 2) {
  const v = S.view;
  v.ox = cx - (cx - v.ox) * factor;
  v.oy = cy - (cy - v.oy) * factor;
  v.scale *= factor;
  draw();
}

function toImage(event) {  // a mouse event -> (x, y) in image pixels, not clamped
  const ratio = canvas.width / canvas.clientWidth;
  const rect = canvas.getBoundingClientRect();
  const cx = (event.clientX - rect.left) * ratio, cy = (event.clientY - rect.top) * ratio;
  return [(cx - S.view.ox) / S.view.scale, (cy - S.view.oy) / S.view.scale];
}

function imageToClient(x, y) {  // for tests: image pixels -> page coordinates of the canvas
  const ratio = canvas.width / canvas.clientWidth;
  const rect = canvas.getBoundingClientRect();
  return [rect.left + (x * S.view.scale + S.view.ox) / ratio, rect.top + (y * S.view.scale + S.view.oy) / ratio];
}

function boxOf(drag) {  // a dragged rectangle -> [x_min, y_min, x_max, y_max], whole pixels inside the image
  const [, height, width] = S.meta.shape;
  const clamp = (v, hi) => Math.max(0, Math.min(hi, Math.round(v)));
  return [clamp(Math.min(drag.x0, drag.x1), width), clamp(Math.min(drag.y0, drag.y1), height),
    clamp(Math.max(drag.x0, drag.x1), width), clamp(Math.max(drag.y0, drag.y1), height)];
}

function draw() {
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (!S.meta || !S.pixels) return;
  const v = S.view;
  ctx.setTransform(v.scale, 0, 0, v.scale, v.ox, v.oy);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(imageLayer, 0, 0);
  if (S.labels) ctx.drawImage(labelLayer, 0, 0);
  ctx.lineWidth = 2 / v.scale;
  for (const o of S.objects) {
    if (!o.box) continue;
    const b = o.box.length === 6 ? [o.box[0], o.box[1], o.box[3], o.box[4]] : o.box;
    const onSlice = o.box.length === 4 || (S.z >= o.box[2] && S.z <= o.box[5]);
    if (!onSlice && o.id !== S.selected) continue;
    ctx.strokeStyle = colour(o.label);
    ctx.setLineDash(o.id === S.selected ? [] : [6 / v.scale, 4 / v.scale]);
    ctx.globalAlpha = onSlice ? 1 : 0.35;
    ctx.strokeRect(b[0], b[1], b[2] - b[0], b[3] - b[1]);
  }
  ctx.globalAlpha = 1;
  ctx.setLineDash([]);
  if (S.drag && S.drag.kind === "box") {
    const b = boxOf(S.drag);
    ctx.strokeStyle = S.redraw ? "#fff" : "#ff0";
    ctx.strokeRect(b[0], b[1], b[2] - b[0], b[3] - b[1]);
  }
}

// --- input -------------------------------------------------------------------------------------------------

canvas.addEventListener("contextmenu", (e) => e.preventDefault());
canvas.addEventListener("pointerdown", (e) => {
  if (!S.meta) return;
  canvas.setPointerCapture(e.pointerId);
  const [x, y] = toImage(e);
  if (e.button === 1 || (e.button === 0 && (e.ctrlKey || e.metaKey))) {
    S.drag = { kind: "pan", px: e.clientX, py: e.clientY };
  } else if (e.button === 2) {
    S.drag = { kind: "contrast", px: e.clientX, py: e.clientY, low: S.display.low, high: S.display.high };
  } else if (e.button === 0) {
    if (e.shiftKey && S.selected !== null) S.redraw = true;
    S.drag = { kind: "box", x0: x, y0: y, x1: x, y1: y };
  }
});
canvas.addEventListener("pointermove", (e) => {
  if (!S.meta) return;
  const d = S.drag;
  if (!d) {
    const [x, y] = toImage(e).map(Math.floor);
    const [, height, width] = S.meta.shape;
    if (x >= 0 && y >= 0 && x < width && y < height && S.pixels) {
      const c = S.pixels.shape[2] || 1, i = (y * width + x) * c;
      const value = c === 3 ? Array.from(S.pixels.data.slice(i, i + 3)).join(",") : S.pixels.data[i];
      const label = S.labels ? S.labels.data[y * width + x] : 0;
      $("slice-label").textContent = `slice ${S.z} / ${S.meta.shape[0] - 1}`;
      canvas.title = `x ${x}, y ${y}${S.meta.dims === 3 ? ", z " + S.z : ""}: ${value}${label ? ", label " + label : ""}`;
    }
    return;
  }
  if (d.kind === "box") {
    [d.x1, d.y1] = toImage(e);
  } else if (d.kind === "pan") {
    const ratio = canvas.width / canvas.clientWidth;
    S.view.ox += (e.clientX - d.px) * ratio;
    S.view.oy += (e.clientY - d.py) * ratio;
    d.px = e.clientX;
    d.py = e.clientY;
  } else if (d.kind === "contrast") {  // right/left: narrower/wider; up/down: brighter/darker
    const width = Math.max(2, d.high - d.low + (e.clientX - d.px));
    const centre = (d.high + d.low) / 2 - (e.clientY - d.py);
    S.display = { low: centre - width / 2, high: centre + width / 2 };
    paintImage();
  }
  draw();
});
canvas.addEventListener("pointerup", () => {
  const d = S.drag;
  S.drag = null;
  if (!d || d.kind !== "box") return draw();
  const box = boxOf(d);
  if (box[2] - box[0] < 2 || box[3] - box[1] < 2) {  // a click: select the object under it
    S.redraw = false;
    const [x, y] = [Math.floor(d.x0), Math.floor(d.y0)];
    const label = S.labels && x >= 0 && y >= 0 && x < S.labels.shape[1] && y < S.labels.shape[0]
      ? S.labels.data[y * S.labels.shape[1] + x] : 0;
    const hit = S.objects.filter((o) => o.label === label).pop();
    if (hit) select(hit.id); else draw();
    return;
  }
  draw();
  submitBox(box).catch(failed);
});
canvas.addEventListener("wheel", (e) => {
  if (!S.meta) return;
  e.preventDefault();
  if (e.ctrlKey || S.meta.dims === 2) {
    const ratio = canvas.width / canvas.clientWidth;
    const rect = canvas.getBoundingClientRect();
    zoom(e.deltaY < 0 ? 1.15 : 1 / 1.15, (e.clientX - rect.left) * ratio, (e.clientY - rect.top) * ratio);
  } else {
    showSlice(S.z + (e.deltaY > 0 ? 1 : -1)).catch(failed);
  }
}, { passive: false });

$("slice").addEventListener("input", () => showSlice(Number($("slice").value)).catch(failed));
$("new").addEventListener("click", () => { S.selected = null; S.redraw = false; renderObjects(); say("draw a box"); });
$("undo").addEventListener("click", () => undo().catch(failed));
$("save").addEventListener("click", () => save().catch(failed));
$("load").addEventListener("click", () => loadSaved().catch(failed));
$("walk").addEventListener("click", () => Promise.resolve(propagate()).catch(failed));
$("file-boxes").addEventListener("click", () => Promise.resolve(fileBoxes()).catch(failed));
$("cancel").addEventListener("click", () => cancel().catch(failed));
$("window").addEventListener("change", () => setWindow($("window").value).catch(failed));

const KEYS = {
  ArrowUp: () => showSlice(S.z + 1), ArrowDown: () => showSlice(S.z - 1),
  PageUp: () => showSlice(S.z + 10), PageDown: () => showSlice(S.z - 10),
  n: () => $("new").click(), r: () => { if (S.selected !== null) { S.redraw = true; say("draw the new box"); } },
  Delete: () => S.selected !== null && deleteObject(S.selected), Backspace: () => KEYS.Delete(),
  s: () => save(), p: () => propagate(), u: () => undo(),
  "[": () => { $("z-min").value = S.z; }, "]": () => { $("z-max").value = S.z; },
  "+": () => zoom(1.25), "=": () => zoom(1.25), "-": () => zoom(1 / 1.25), 0: () => fitView(),
  w: () => {
    if (!S.meta || S.meta.window === null) return;
    const select = $("window");
    select.selectedIndex = (select.selectedIndex + 1) % 3;
    return setWindow(select.value);
  },
  Escape: () => { S.drag = null; S.redraw = false; draw(); return cancel(); },
};
document.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement || !S.meta) return;
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") { e.preventDefault(); undo().catch(failed); return; }
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "s") { e.preventDefault(); save().catch(failed); return; }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (/^[1-9]$/.test(e.key)) {
    const obj = S.objects[Number(e.key) - 1];
    if (obj) select(obj.id);
    return;
  }
  const action = KEYS[e.key] || KEYS[e.key.toLowerCase()];
  if (!action) return;
  e.preventDefault();
  Promise.resolve(action()).catch(failed);
});
window.addEventListener("resize", () => { resize(); fitView(); });

window.repmedsam = { imageToClient, state: S };  // for the browser test
resize();
loadCases().catch(failed);
