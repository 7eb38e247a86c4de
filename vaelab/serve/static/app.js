// vaelab explorer: the page side. Plain JS, no framework; every picture comes from the
// server's JSON endpoints (docs/explorer.md). Errors are shown in the page's status line.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf"];
const MAX_SLIDERS = 32;
const MAX_UPLOAD = 2 * 1024 * 1024;
const BLANK = "data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw==";  // an empty picture frame
const state = { run: null, info: null, map: null, z: [], y: 0, a: null, b: null, hover: -1, points: new Map() };
const explorer = { ready: false, state, pointPosition: (i) => toScreen(state.map.points[i]) };
window.vaelabExplorer = explorer;

function say(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function post(what, body) {
  return api(runPath(what), { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

function runPath(what) {
  return `/api/runs/${state.run}/${what}`;
}

// One decode in flight at a time; moves made meanwhile are sent as one request when it returns.
function latest(fn) {
  let busy = false, again = false;
  const go = async () => {
    if (busy) { again = true; return; }
    busy = true;
    try { await fn(); } catch (e) { say(e.message, true); }
    busy = false;
    if (again) { again = false; go(); }
  };
  let timer = null;
  return () => { clearTimeout(timer); timer = setTimeout(go, 30); };
}

function codeBody(z) {
  return state.info.conditional ? { z, y: state.y } : { z };
}

async function decode() {
  const z = state.z.slice();
  $("decoded").src = (await post("decode", codeBody(z))).image;
  const key = JSON.stringify(z);  // the tiles depend on the code only, not on the chosen class
  if (state.info.conditional && key !== state.tilesOf) { showClasses((await post("classes", { z })).images); state.tilesOf = key; }
}

async function interpolate() {
  if (!state.a || !state.b) return;
  const t = Number($("interp").value);
  const z = state.a.code.map((v, j) => (1 - t) * v + t * state.b.code[j]);
  $("interp-image").src = (await post("decode", codeBody(z))).image;
}

const decodeSoon = latest(decode);
const interpolateSoon = latest(interpolate);

// --- the class tiles of a conditional model: one per class, wrapping to the panel's width ---

function showClasses(images) {
  $("class-grid").replaceChildren(...images.map((src, y) => {
    const fig = document.createElement("figure"), img = document.createElement("img"), cap = document.createElement("figcaption");
    img.src = src; img.alt = `class ${label(y)}`;
    fig.dataset.y = String(y);
    cap.textContent = label(y);
    fig.append(img, cap);
    return fig;
  }));
  markClass();
}

function chooseClass(y) {
  state.y = y;
  $("class").value = String(y);
  markClass();
  decodeSoon();
}

function markClass() {
  for (const fig of $("class-grid").children) fig.classList.toggle("chosen", Number(fig.dataset.y) === state.y);
}

// --- the map -------------------------------------------------------------------------

let bounds = null;

function toScreen([x, y]) {
  const c = $("map"), pad = 12;
  return [pad + (x - bounds.x0) / (bounds.x1 - bounds.x0) * (c.width - 2 * pad),
    c.height - pad - (y - bounds.y0) / (bounds.y1 - bounds.y0) * (c.height - 2 * pad)];
}

function drawMap() {
  const c = $("map"), g = c.getContext("2d"), { points, labels } = state.map;
  g.clearRect(0, 0, c.width, c.height);
  g.globalAlpha = 0.7;
  points.forEach((p, i) => {
    const [x, y] = toScreen(p);
    g.fillStyle = labels ? COLORS[labels[i] % COLORS.length] : COLORS[0];
    g.fillRect(x - 1.5, y - 1.5, 3, 3);
  });
  g.globalAlpha = 1;
  for (const [pick, name] of [[state.a, "A"], [state.b, "B"]]) {
    if (!pick) continue;
    const [x, y] = toScreen(points[pick.index]);
    g.strokeStyle = "#000"; g.lineWidth = 2;
    g.beginPath(); g.arc(x, y, 6, 0, 2 * Math.PI); g.stroke();
    g.fillStyle = "#000"; g.fillText(name, x + 8, y - 8);
  }
}

function nearestPoint(event) {
  const r = $("map").getBoundingClientRect();
  const mx = (event.clientX - r.left) * $("map").width / r.width, my = (event.clientY - r.top) * $("map").height / r.height;
  let best = -1, bestD = 100;  // within 10 pixels
  state.map.points.forEach((p, i) => {
    const [x, y] = toScreen(p), d = (x - mx) ** 2 + (y - my) ** 2;
    if (d < bestD) { best = i; bestD = d; }
  });
  return best;
}

async function point(i) {
  const key = `${state.run}/${i}`;
  if (!state.points.has(key)) state.points.set(key, await api(runPath(`points/${i}`)));
  return state.points.get(key);
}

const hoverSoon = latest(async () => {
  if (state.hover < 0) return;
  showHover(await point(state.hover));
});

function showHover(p) {
  $("hover-image").src = p.image; $("hover-recon").src = p.recon;
  $("hover-label").textContent = `#${p.index}` + (p.label === null ? "" : `, label ${label(p.label)}`);
}

function showPicks() {
  const { a, b } = state;
  $("pick-a").src = a ? a.image : BLANK; $("recon-a").src = a ? a.recon : BLANK;
  $("pick-b").src = b ? b.image : BLANK; $("recon-b").src = b ? b.recon : BLANK;
  if (!b) $("interp-image").src = BLANK;
  $("interp").disabled = !b;
}

// The first pictures, before any interaction: map point 0 as the hovered image and as A, the
// first point of another label (else point 1) as B, and the start of the path between them.
async function showFirst() {
  const n = state.map.points.length, labels = state.map.labels;
  if (n === 0) return;
  state.a = await point(0);
  const other = labels ? labels.findIndex((y) => y !== labels[0]) : -1;
  const j = other >= 0 ? other : n > 1 ? 1 : -1;
  state.b = j >= 0 ? await point(j) : null;
  showHover(state.a);
  showPicks();
  drawMap();
  await interpolate();
}

async function pick(i) {
  const p = await point(i);
  if (!state.a || state.b) { state.a = p; state.b = null; } else { state.b = p; }
  showPicks();
  if (state.info.conditional && p.label !== null) { state.y = p.label; $("class").value = String(p.label); markClass(); }
  setCode(p.code);
  drawMap();
  if (state.b) interpolateSoon();
  say(`picked #${p.index}` + (state.b ? ": scrub A → B below the map" : "; click another point for B"));
}

function label(y) {
  return state.info.classes[y] ?? String(y);
}

// --- sliders -------------------------------------------------------------------------

function buildSliders() {
  const box = $("sliders"), info = state.info, unit = info.measure.startsWith("mean KL") ? "KL" : "var";
  box.replaceChildren();
  const shown = info.dims.slice(0, MAX_SLIDERS);
  for (const { index, score } of shown) {
    const name = document.createElement("label"), input = document.createElement("input"), out = document.createElement("output");
    name.textContent = `z${index} · ${unit} ${score.toFixed(2)}`;
    name.htmlFor = input.id = `dim-${index}`;
    Object.assign(input, { type: "range", min: -4, max: 4, step: 0.05, value: 0 });
    input.dataset.dim = index;
    input.addEventListener("input", () => { state.z[index] = Number(input.value); out.value = Number(input.value).toFixed(2); decodeSoon(); });
    out.value = "0.00";
    box.append(name, input, out);
  }
  $("dims-note").textContent = `Dimensions ordered by ${info.measure}` +
    (info.dims.length > shown.length ? `; the ${shown.length} highest of ${info.dims.length} shown, the others keep their value.` : ".");
}

function setCode(code, decodeIt = true) {
  state.z = code.slice();
  for (const input of $("sliders").querySelectorAll("input")) {
    const v = state.z[Number(input.dataset.dim)];
    input.value = v; input.nextElementSibling.value = v.toFixed(2);
  }
  if (decodeIt) decodeSoon();
}

// --- uploads -------------------------------------------------------------------------

async function upload() {
  const file = $("upload").files[0];
  if (!file) return;
  if (file.size > MAX_UPLOAD) { say(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; upload at most 2 MB`, true); return; }
  const query = new URLSearchParams({ invert: $("invert").checked ? "1" : "0" });
  if (state.info.conditional) query.set("y", String(state.y));
  say(`encoding ${file.name}…`);
  try {
    const r = await api(`${runPath("upload")}?${query}`, { method: "POST", headers: { "Content-Type": file.type || "application/octet-stream" }, body: file });
    $("upload-image").src = r.image; $("upload-recon").src = r.recon;
    $("upload-pair").hidden = false;
    $("upload-code").textContent = "code: [" + r.code.map((v) => v.toFixed(2)).join(", ") + "]";
    $("neighbours").replaceChildren(...r.neighbours.map((n) => {
      const fig = document.createElement("figure"), img = document.createElement("img"), cap = document.createElement("figcaption");
      img.src = n.image; img.alt = `training image ${n.index}`;
      cap.textContent = (n.label === null ? "" : `${label(n.label)} · `) + `d ${n.distance.toFixed(2)}`;
      fig.append(img, cap);
      return fig;
    }));
    setCode(r.code);
    say(`${file.name}: its code is on the sliders`);
  } catch (e) {
    say(e.message, true);
  }
}

// --- runs ----------------------------------------------------------------------------

async function loadRun(id) {
  explorer.ready = false;
  state.run = id; state.info = state.runs[id]; state.a = state.b = null; state.hover = -1;
  say(`loading ${state.info.name}…`);
  state.map = await api(runPath("map"));
  const xs = state.map.points.map((p) => p[0]), ys = state.map.points.map((p) => p[1]);
  bounds = { x0: Math.min(...xs), x1: Math.max(...xs) + 1e-9, y0: Math.min(...ys), y1: Math.max(...ys) + 1e-9 };
  $("map-note").textContent = `${state.map.points.length} test images, ${state.map.projection}`;
  legend();
  buildSliders();
  $("class-row").hidden = !state.info.conditional;
  $("class").replaceChildren(...state.info.classes.map((name, i) => new Option(name, String(i))));
  state.y = 0;
  for (const img of document.images) img.src = BLANK;
  $("class-grid").replaceChildren(); state.tilesOf = null;
  $("upload-pair").hidden = true; $("upload-code").textContent = ""; $("neighbours").replaceChildren();
  $("interp").disabled = true; $("interp").value = "0";
  drawMap();
  setCode(new Array(state.info.latent_dim).fill(0), false);
  await Promise.all([decode(), showFirst()]);  // the prior mean decoded, and the first map points shown
  say(`${state.info.name}: ${state.info.latent_dim}-D codes, ${state.info.image_shape.join("×")} images`);
  explorer.ready = true;
}

function legend() {
  const labels = state.map.labels;
  $("legend").replaceChildren();
  if (!labels) return;
  for (const y of [...new Set(labels)].sort((a, b) => a - b)) {
    const s = document.createElement("span"), dot = document.createElement("i");
    dot.style.background = COLORS[y % COLORS.length];
    s.append(dot, label(y));
    $("legend").append(s);
  }
}

async function start() {
  try {
    state.runs = await api("/api/runs");
    $("run").replaceChildren(...state.runs.map((r) => new Option(r.name, String(r.id))));
    $("run").addEventListener("change", () => loadRun(Number($("run").value)).catch((e) => say(e.message, true)));
    $("map").addEventListener("mousemove", (e) => { const i = nearestPoint(e); if (i >= 0 && i !== state.hover) { state.hover = i; hoverSoon(); } });
    $("map").addEventListener("click", (e) => { const i = nearestPoint(e); if (i >= 0) pick(i).catch((err) => say(err.message, true)); });
    $("interp").addEventListener("input", interpolateSoon);
    $("class").addEventListener("change", () => chooseClass(Number($("class").value)));
    $("class-grid").addEventListener("click", (e) => { const fig = e.target.closest("figure"); if (fig) chooseClass(Number(fig.dataset.y)); });
    $("zero").addEventListener("click", () => setCode(new Array(state.info.latent_dim).fill(0)));
    $("upload").addEventListener("change", upload);
    await loadRun(0);
  } catch (e) {
    say(e.message, true);
  }
}

start();
