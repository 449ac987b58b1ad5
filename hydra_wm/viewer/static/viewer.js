// hydra-wm viewer: the results browser and live play over the server's JSON API (hydra_wm/viewer/server.py).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { config: null, folder: null, sample: null, info: null, t: 0, step: null, timer: null,
                live: null, liveT: 0, liveStep: null, liveTimer: null, busy: false };

// ------------------------------------------------------------------------------------------------ plumbing
function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(path, options) {
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (e) { data = { error: `${response.status} ${response.statusText}` }; }
  if (!response.ok) throw new Error(data && data.error ? data.error : `${response.status} ${response.statusText}`);
  return data;
}

function query(params) {
  return Object.entries(params).map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&");
}

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.appendChild(child);
  return node;
}

function switchView(name) {
  for (const view of ["results", "live"]) {
    $(`view-${view}`).hidden = view !== name;
    $(`tab-${view}`).classList.toggle("active", view === name);
  }
  if (name === "live" && !state.live) liveLoad();
}

// -------------------------------------------------------------------------------------- shared drawings
function drawCameras(canvas, cameras, current, contextFrames) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  ctx.clearRect(0, 0, W, H);
  if (!cameras || !cameras.length) {
    ctx.fillStyle = "#888"; ctx.font = "12px sans-serif"; ctx.fillText("no cameras in this folder", 30, H / 2);
    return;
  }
  const xs = cameras.map((c) => c.x), ys = cameras.map((c) => c.y);
  const minX = Math.min(...xs), maxX = Math.max(...xs), minY = Math.min(...ys), maxY = Math.max(...ys);
  const span = Math.max(maxX - minX, maxY - minY, 1e-6);
  const moving = span > 1e-3;
  const scale = moving ? (W - 60) / span : 0;
  // Top view: world X to the right, world Y down the page would mirror; draw Y up (UE: X forward, Y right, Z up).
  const px = (c) => [W / 2 + (c.x - (minX + maxX) / 2) * scale, H / 2 - (c.y - (minY + maxY) / 2) * scale];
  const ray = (c, length, colour, width) => {
    const [x, y] = px(c), a = (c.yaw * Math.PI) / 180;
    ctx.strokeStyle = colour; ctx.lineWidth = width;
    ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(x + length * Math.cos(a), y - length * Math.sin(a)); ctx.stroke();
  };
  if (moving) {
    ctx.strokeStyle = "#bbb"; ctx.lineWidth = 1; ctx.beginPath();
    cameras.forEach((c, i) => { const [x, y] = px(c); if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
    ctx.stroke();
  }
  cameras.forEach((c, i) => ray(c, moving ? 14 : 80, i < contextFrames ? "rgba(120,120,120,0.25)" : "rgba(67,160,71,0.25)", 1));
  const cur = cameras[Math.min(current, cameras.length - 1)];
  const [x, y] = px(cur), a = (cur.yaw * Math.PI) / 180, half = Math.PI / 4;  // Flatland: 90 degree field of view
  ctx.fillStyle = "rgba(229,57,53,0.25)"; ctx.beginPath(); ctx.moveTo(x, y);
  ctx.arc(x, y, moving ? 30 : 90, -a - half, -a + half); ctx.closePath(); ctx.fill();
  ray(cur, moving ? 30 : 90, "#e53935", 2);
  ctx.fillStyle = "#000"; ctx.beginPath(); ctx.arc(x, y, 3, 0, 2 * Math.PI); ctx.fill();
  ctx.fillStyle = "#555"; ctx.font = "11px sans-serif";
  ctx.fillText(`yaw ${cur.yaw.toFixed(1)}°`, 4, H - 6);
}

function thumb(src, label, cls, title) {
  return el("span", { class: `thumb ${cls || ""}`, title: title || label }, [el("img", { src, alt: label }), el("span", { text: label })]);
}

// Retrieval of one frame: per block (a record of every step and block) or per chunk (a rollout record).
function drawRetrieval(box, data, frameSrc, stepInput, stepLabel) {
  box.replaceChildren();
  box.dataset.frame = data.query_frame;
  if (data.kind === "none") {
    box.appendChild(el("p", { class: "muted", text: data.reason }));
    stepInput.parentElement.hidden = true;
    return;
  }
  if (data.kind === "blocks") {
    stepInput.parentElement.hidden = false;
    stepInput.max = data.steps - 1; stepInput.value = data.step;
    stepLabel.textContent = `${data.step + 1} of ${data.steps}` + (data.timestep != null ? ` (timestep ${data.timestep.toFixed(0)})` : "");
    box.appendChild(el("p", { text: `frame ${data.query_frame} (chunk ${data.chunk}) retrieved, per block, best first (relevance score under each memory frame):` }));
    for (const block of data.blocks) {
      const row = el("div", { class: "block" }, [el("b", { text: `block ${block.block}` })]);
      if (!block.items.length) row.appendChild(el("span", { class: "muted", text: "nothing eligible" }));
      for (const item of block.items) {
        const frames = item.frames.length > 1 ? `${item.frames[0]}–${item.frames[item.frames.length - 1]}` : `${item.frames[0]}`;
        row.appendChild(thumb(frameSrc(item), `${item.score.toFixed(1)}`, item.stream, `memory frame ${item.memory}: frames ${frames}, score ${item.score.toFixed(3)}`));
      }
      box.appendChild(row);
    }
    return;
  }
  stepInput.parentElement.hidden = true;
  box.appendChild(el("p", { text: `frame ${data.query_frame}: chunk ${data.chunk} conditioned on ${data.recent.length} recent + ${data.selected.length} pre-selected frames; its in-model retrievals (share of step × block × frame choices):` }));
  const rows = [["recent", data.recent, "recent"], ["pre-selected", data.selected, "selected"], ["retrieved", data.retrieved, "generated"]];
  for (const [name, items, cls] of rows) {
    const row = el("div", { class: "block" }, [el("b", { text: name })]);
    if (!items.length) row.appendChild(el("span", { class: "muted", text: "none" }));
    for (const item of items) {
      const label = item.score != null ? `${item.frame}: ${(100 * item.score).toFixed(0)}%` : `${item.frame}`;
      row.appendChild(thumb(frameSrc(item), label, cls));
    }
    box.appendChild(row);
  }
}

// --------------------------------------------------------------------------------------------- results
function frameURL(stream, t) {
  return `/api/frame?${query({ folder: state.folder, sample: state.sample, stream, t })}`;
}

async function openFolder(folder) {
  showError("");
  stopPlay();
  try {
    const data = await api(`/api/open?${query({ folder })}`);
    state.folder = data.folder;
    $("folder-kind").textContent = `${data.kind}: ${data.samples.length} sample(s)`;
    const select = $("sample-select");
    select.replaceChildren(...data.samples.map((name) => el("option", { value: name, text: name })));
    await openSample(data.samples[0]);
  } catch (e) {
    $("results-body").hidden = true;
    $("folder-kind").textContent = "";
    $("sample-select").replaceChildren();
    showError(e.message);
  }
}

async function openSample(name) {
  showError("");
  stopPlay();
  try {
    const info = await api(`/api/sample?${query({ folder: state.folder, sample: name })}`);
    state.sample = name; state.info = info; state.t = 0; state.step = null;
    $("results-body").hidden = false;
    $("fig-truth").hidden = !info.truth;
    $("timeline").max = info.generated_frames - 1;
    $("timeline").value = 0;
    $("notes").replaceChildren(...info.notes.map((n) => el("li", { text: n })));
    const keys = Object.keys(info.summary).slice(0, 12);
    $("summary").replaceChildren(...keys.map((k) => el("tr", {}, [el("td", { text: k }), el("td", { text: Number(info.summary[k]).toFixed(3) })])));
    if (info.generated_frames * info.height * info.width < 2e7) {  // small clips: load every frame now, play smoothly
      for (let t = 0; t < info.generated_frames; t++) {
        for (const s of ["generated"].concat(info.truth ? ["truth"] : [])) new Image().src = frameURL(s, t);
      }
    }
    await showFrame(0);
  } catch (e) {
    $("results-body").hidden = true;
    showError(e.message);
  }
}

async function showFrame(t) {
  const info = state.info;
  state.t = t;
  $("timeline").value = t;
  const Tc = info.context_frames;
  $("img-context").src = frameURL("context", t % Tc);
  $("img-generated").src = frameURL("generated", t);
  if (info.truth) $("img-truth").src = frameURL("truth", t);
  $("cap-context").textContent = `(frame ${t % Tc}, looped)`;
  $("cap-generated").textContent = `(frame ${Tc + t})`;
  const chunk = info.chunks.findIndex((c) => c.start <= t && t < c.start + c.frames);
  $("frame-label").textContent = `generated frame ${t + 1} / ${info.generated_frames} (video frame ${Tc + t}` + (info.chunks.length > 1 ? `, chunk ${chunk})` : ")");
  drawCameras($("camera-canvas"), info.cameras, Tc + t, Tc);
  drawMetrics(t);
  try {
    const params = { folder: state.folder, sample: state.sample, t };
    if (state.step != null) params.step = state.step;
    const data = await api(`/api/retrieval?${query(params)}`);
    if (state.t === t) drawRetrieval($("retrieval"), data, (item) => frameURL(item.stream, item.t), $("step-input"), $("step-label"));
  } catch (e) { showError(e.message); }
}

function drawMetrics(t) {
  const canvas = $("metrics-canvas"), ctx = canvas.getContext("2d");
  const info = state.info, W = canvas.width, H = canvas.height, pad = 34;
  ctx.clearRect(0, 0, W, H);
  const n = info.generated_frames;
  const x = (i) => pad + ((W - 2 * pad) * i) / Math.max(n - 1, 1);
  const colours = { psnr: "#1e88e5", ssim: "#8e24aa", presence: "#fb8c00", lpips: "#6d4c41" };
  let legend = 0;
  for (const [name, values] of Object.entries(info.series)) {
    const finite = values.filter((v) => v != null && isFinite(v));
    if (!finite.length) continue;
    const lo = Math.min(...finite), hi = Math.max(...finite), range = hi - lo || 1;
    const y = (v) => H - 18 - ((H - 40) * (v - lo)) / range;
    ctx.strokeStyle = colours[name] || "#444"; ctx.lineWidth = 1.5; ctx.beginPath();
    let drawing = false;
    values.forEach((v, i) => {
      if (v == null || !isFinite(v)) { drawing = false; return; }
      if (drawing) ctx.lineTo(x(i), y(v)); else ctx.moveTo(x(i), y(v));
      drawing = true;
    });
    ctx.stroke();
    ctx.fillStyle = colours[name] || "#444"; ctx.font = "11px sans-serif";
    const current = values[t] == null ? "n/a" : values[t].toFixed(2);
    ctx.fillText(`${name} ${lo.toFixed(2)}–${hi.toFixed(2)} (now ${current})`, pad + legend, 12);
    legend += 190;
  }
  if (!Object.keys(info.series).length) { ctx.fillStyle = "#888"; ctx.fillText("no per-frame metrics (no ground truth, no eval report)", pad, H / 2); }
  for (const c of info.chunks.slice(1)) {
    ctx.strokeStyle = "#ddd"; ctx.beginPath(); ctx.moveTo(x(c.start), 16); ctx.lineTo(x(c.start), H - 16); ctx.stroke();
  }
  ctx.font = "12px sans-serif";
  for (const e of info.events) {  // exit (v, red) and entry (^, green), in generated-frame numbers
    if (e.exit >= 0 && e.exit < n) { ctx.fillStyle = "#e53935"; ctx.fillText(`▼${e.subject}`, x(e.exit) - 5, H - 4); }
    if (e.entry >= 0 && e.entry < n) { ctx.fillStyle = "#43a047"; ctx.fillText(`▲${e.subject}`, x(e.entry) - 5, H - 4); }
  }
  ctx.strokeStyle = "#e53935"; ctx.lineWidth = 1; ctx.beginPath(); ctx.moveTo(x(t), 16); ctx.lineTo(x(t), H - 16); ctx.stroke();
}

function stopPlay() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
  $("play-button").textContent = "Play";
}

function togglePlay() {
  if (state.timer) { stopPlay(); return; }
  if (!state.info) return;
  $("play-button").textContent = "Pause";
  state.timer = setInterval(() => showFrame((state.t + 1) % state.info.generated_frames), 1000 / (state.info.fps || 15));
}

// ------------------------------------------------------------------------------------------------ live
function liveURL(t) { return `/api/live/frame?t=${t}&epoch=${state.live ? state.live.epoch : 0}`; }

function liveBusy(busy, message) {
  state.busy = busy;
  for (const id of ["live-left", "live-hold", "live-right", "live-reset"]) $(id).disabled = busy;
  if (message) $("live-status").textContent = message;
}

async function liveLoad() {
  liveBusy(true, "loading the model…");
  try { liveShow(await api("/api/live/state")); } catch (e) { showError(e.message); $("live-status").textContent = "no live world"; }
  liveBusy(false);
}

async function liveAction(path, body, message) {
  if (state.busy) return;
  showError("");
  liveBusy(true, message);
  try {
    liveShow(await api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) }));
  } catch (e) { showError(e.message); }
  liveBusy(false);
}

function liveShow(live) {
  state.live = live;
  const last = live.chunks[live.chunks.length - 1];
  $("live-status").textContent = last
    ? `chunk ${last.index + 1} (${last.action}): ${last.seconds.toFixed(2)} s for ${last.frames} frames — ${live.steps} steps, ${live.threads} thread(s), ${live.model}`
    : `clip ${live.index} of world seed ${live.seed}: ${live.context_frames} context frames; steer to generate (${live.chunk_frames} frames a step)`;
  $("live-times").replaceChildren(...live.chunks.map((c) => el("li", { text: `${c.seconds.toFixed(2)} s  ${c.action}` })));
  $("bank-label").textContent = `${live.bank_frames} frames, ${(live.bank_bytes / 1024).toFixed(0)} KB`;
  const bank = $("bank");
  const recent = new Set(last ? last.recent : []), selected = new Set(last ? last.selected : []);
  const retrieved = last ? last.retrieved : {};
  bank.replaceChildren(...Array.from({ length: live.frames }, (_, t) => {
    const cls = last && t >= last.start ? "new" : recent.has(t) ? "recent" : selected.has(t) ? "selected" : t < live.context_frames ? "context" : "";
    const node = thumb(liveURL(t), `${t}`, cls, retrieved[t] ? `frame ${t}: ${(100 * retrieved[t]).toFixed(1)}% of retrievals` : `frame ${t}`);
    node.dataset.frame = t;
    const bar = el("span", { class: "bar" });
    bar.style.width = `${Math.min(100, 300 * (retrieved[t] || 0))}%`;
    node.appendChild(bar);
    node.addEventListener("click", () => liveFrame(t));
    return node;
  }));
  $("live-timeline").max = live.frames - 1;
  liveFrame(last ? last.start : live.frames - 1);
  if (last) livePlayChunk(last);
}

async function liveFrame(t) {
  const live = state.live;
  state.liveT = t;
  $("live-timeline").value = t;
  $("live-frame").src = liveURL(t);
  $("live-frame").dataset.frame = t;
  $("live-caption").textContent = t < live.context_frames ? `context frame ${t}` : `generated frame ${t}`;
  $("live-frame-label").textContent = `frame ${t} / ${live.frames - 1}`;
  drawCameras($("live-camera"), live.cameras, t, live.context_frames);
  if (t < live.context_frames) {
    $("live-retrieval").replaceChildren(el("p", { class: "muted", text: "a context frame: pick a generated frame to see what it retrieved" }));
    $("live-step-input").parentElement.hidden = true;
    return;
  }
  try {
    const params = { t };
    if (state.liveStep != null) params.step = state.liveStep;
    const data = await api(`/api/live/retrieval?${query(params)}`);
    if (state.liveT === t) drawRetrieval($("live-retrieval"), data, (item) => liveURL(item.t), $("live-step-input"), $("live-step-label"));
  } catch (e) { if (!/generating/.test(e.message)) showError(e.message); }
}

function liveStopPlay() {
  if (state.liveTimer) clearInterval(state.liveTimer);
  state.liveTimer = null;
  $("live-play").textContent = "Play";
}

function livePlayChunk(chunk) {  // show the new chunk's frames once, then stay on its first frame
  liveStopPlay();
  let i = 0;
  const frame = $("live-frame");
  state.liveTimer = setInterval(() => {
    if (i >= chunk.frames) { liveStopPlay(); frame.src = liveURL(state.liveT); return; }
    frame.src = liveURL(chunk.start + i++);
  }, 1000 / (state.live.fps || 15));
}

function liveTogglePlay() {
  if (state.liveTimer) { liveStopPlay(); return; }
  $("live-play").textContent = "Pause";
  state.liveTimer = setInterval(() => liveFrame((state.liveT + 1) % state.live.frames), 1000 / (state.live.fps || 15));
}

const step = (action) => liveAction("/api/live/step", { action }, `generating (${action})…`);

// ------------------------------------------------------------------------------------------------ wiring
async function main() {
  $("tab-results").addEventListener("click", () => switchView("results"));
  $("tab-live").addEventListener("click", () => switchView("live"));
  $("open-form").addEventListener("submit", (e) => { e.preventDefault(); openFolder($("folder-input").value.trim()); });
  $("sample-select").addEventListener("change", (e) => openSample(e.target.value));
  $("timeline").addEventListener("input", (e) => { stopPlay(); showFrame(Number(e.target.value)); });
  $("play-button").addEventListener("click", togglePlay);
  $("step-input").addEventListener("input", (e) => { state.step = Number(e.target.value); showFrame(state.t); });
  $("live-left").addEventListener("click", () => step("left"));
  $("live-hold").addEventListener("click", () => step("hold"));
  $("live-right").addEventListener("click", () => step("right"));
  $("live-reset").addEventListener("click", () => liveAction("/api/live/reset", { index: Number($("live-index").value) || 0 }, "resetting…"));
  $("live-timeline").addEventListener("input", (e) => { liveStopPlay(); liveFrame(Number(e.target.value)); });
  $("live-play").addEventListener("click", liveTogglePlay);
  $("live-step-input").addEventListener("input", (e) => { state.liveStep = Number(e.target.value); liveFrame(state.liveT); });
  document.addEventListener("keydown", (e) => {
    if ($("view-live").hidden || e.target.tagName === "INPUT") return;
    const action = { ArrowLeft: "left", a: "left", ArrowRight: "right", d: "right", ArrowDown: "hold", s: "hold", " ": "hold" }[e.key];
    if (action) { e.preventDefault(); step(action); }
  });
  try { state.config = await api("/api/config"); } catch (e) { showError(e.message); state.config = {}; }
  const wanted = new URLSearchParams(location.search);
  const folder = wanted.get("folder") || state.config.folder;
  if (folder) {
    switchView("results");
    $("folder-input").value = folder;
    await openFolder(folder);
  } else {
    switchView(wanted.get("view") === "results" ? "results" : "live");
  }
}

main();
