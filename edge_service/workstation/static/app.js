// dgs-edge workstation page: plain JS, no build step. Everything goes through the HTTP API
// and the live WebSocket (/api/v1/live), so the page can do nothing a script could not.
"use strict";

const $ = (id) => document.getElementById(id);
const api = async (method, path, body) => {
  const r = await fetch(path, {
    method,
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) {
    let d = data && data.detail;
    if (Array.isArray(d)) d = d.map((x) => `${(x.loc || []).slice(-1)[0]}: ${x.msg}`).join("; ");
    throw new Error(d || `${r.status}`);
  }
  return data;
};

const S = {
  current: null,       // id of the session started or selected here
  image: null,         // latest ImageBitmap
  overlay: null,       // latest overlay event
  trace: [],           // [ir, displacement] of the acquiring session
  lags: [],            // frame time -> overlay received here, ms (the benchmark reads it)
  overlays: 0,
  images: 0,
};
window.dgs = S;

// ---- live stream -------------------------------------------------------------------------
function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/api/v1/live`);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (ev) => {
    if (typeof ev.data !== "string") return onImage(ev.data);
    const m = JSON.parse(ev.data);
    if (m.type === "overlay") onOverlay(m);
    else if (m.type === "status") onStatus(m);
    else if (m.type === "state" || m.type === "session") onSessionEvent(m);
  };
  ws.onclose = () => { setPill("pill-health", "live stream lost, reconnecting", "bad"); setTimeout(connect, 1000); };
}

async function onImage(buf) {
  const blob = new Blob([new Uint8Array(buf, 12)], { type: "image/jpeg" });
  try {
    const bmp = await createImageBitmap(blob);
    if (S.image && S.image.close) S.image.close();
    S.image = bmp;
    S.images += 1;
    $("nolive").style.display = "none";
    requestAnimationFrame(draw);
  } catch (e) { /* a torn image is skipped */ }
}

function draw() {
  const c = $("view"), g = c.getContext("2d");
  if (S.image) {
    if (c.width !== S.image.width) { c.width = S.image.width; c.height = S.image.height; }
    g.drawImage(S.image, 0, 0);
  }
  const o = S.overlay;
  if (!o) return;
  const poly = (pts, colour) => {
    if (!pts || pts.length < 3) return;
    g.strokeStyle = colour; g.lineWidth = 2; g.beginPath();
    g.moveTo(pts[0][0], pts[0][1]);
    for (const p of pts.slice(1)) g.lineTo(p[0], p[1]);
    g.closePath(); g.stroke();
  };
  poly(o.nerve && o.nerve.contour, "#2ecc71");
  poly(o.calcification && o.calcification.contour, "#f39c12");
}

const fmt = (v, nd = 1) => (v === null || v === undefined ? "—" : Number(v).toFixed(nd));

function gauge(id, v, lo, hi) {
  const el = $(id);
  if (v === null || v === undefined) { el.style.width = "0"; return; }
  const zero = (-lo / (hi - lo)) * 100;
  const pos = ((Math.max(lo, Math.min(hi, v)) - lo) / (hi - lo)) * 100;
  el.style.left = `${Math.min(zero, pos)}%`;
  el.style.width = `${Math.abs(pos - zero)}%`;
}

function onOverlay(o) {
  if (o.id !== S.current && $("state").textContent !== "acquiring") adopt(o.id);
  S.overlay = o;
  S.overlays += 1;
  S.lags.push(Date.now() - o.t * 1000);
  if (S.lags.length > 5000) S.lags.shift();
  const n = o.nerve || {};
  $("ap").textContent = fmt(n.ap_mm);
  $("width").textContent = fmt(n.width_mm);
  $("csa").textContent = fmt(n.csa_mm2, 0);
  $("calc").textContent = o.calcification && o.calcification.present ? "present" : "none";
  const a = o.angles;
  $("ang-flex").textContent = a ? fmt(a.flexion_deg) : "—";
  $("ang-add").textContent = a ? fmt(a.adduction_deg) : "—";
  $("ang-ir").textContent = a ? fmt(a.internal_rotation_deg) : "—";
  gauge("g-flex", a && a.flexion_deg, -30, 120);
  gauge("g-add", a && a.adduction_deg, -30, 45);
  gauge("g-ir", a && a.internal_rotation_deg, -30, 60);
  const gl = o.gliding || {};
  if (gl.displacement_mm !== null && gl.internal_rotation_deg !== null && gl.displacement_mm !== undefined) {
    S.trace.push([gl.internal_rotation_deg, gl.displacement_mm]);
    drawTrace();
  }
  renderSteps(o.steps || []);
  const c = o.counters || {};
  $("livestats").textContent =
    `frames recorded ${c.frames_recorded} · analysed ${c.frames_analysed} · ` +
    `dropped for detection ${c.dropped_for_detection} · by source ${c.dropped_by_source} · ` +
    `frozen ${c.frozen_frames} · clip samples ${c.imu_samples} · detect ${o.detect_ms} ms`;
  if (!S.image) draw();
  else requestAnimationFrame(draw);
}

function renderSteps(steps) {
  const ol = $("steps");
  ol.innerHTML = "";
  for (const s of steps) {
    const li = document.createElement("li");
    li.dataset.step = s.step;
    li.className = s.done ? "done" : "";
    li.textContent = `${s.label} (${s.progress})`;
    ol.appendChild(li);
  }
}

function drawTrace() {
  const c = $("trace"), g = c.getContext("2d");
  const W = c.width, H = c.height, m = 28;
  g.clearRect(0, 0, W, H);
  const pts = S.trace;
  $("trace-n").textContent = `${pts.length} points`;
  if (!pts.length) return;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(-5, ...xs), x1 = Math.max(45, ...xs);
  const y0 = Math.min(-1, ...ys), y1 = Math.max(1, ...ys);
  const sx = (x) => m + ((x - x0) / (x1 - x0)) * (W - m - 8);
  const sy = (y) => H - m - ((y - y0) / (y1 - y0)) * (H - m - 8);
  g.strokeStyle = "#444"; g.strokeRect(m, 8, W - m - 8, H - m - 8);
  g.fillStyle = "#889"; g.font = "10px sans-serif";
  g.fillText("IR °", W - 30, H - 8); g.fillText("mm", 2, 14);
  g.fillText(x0.toFixed(0), m, H - 14); g.fillText(x1.toFixed(0), W - 30, H - 18);
  g.fillText(y1.toFixed(1), 2, 24); g.fillText(y0.toFixed(1), 2, H - m);
  g.fillStyle = "#3fa7d6";
  for (const [x, y] of pts) g.fillRect(sx(x) - 1, sy(y) - 1, 2.5, 2.5);
}

function setPill(id, text, cls) {
  const el = $(id);
  el.textContent = text;
  el.className = `pill ${cls}`;
}

function onStatus(h) {
  const c = h.checks || {};
  setPill("pill-probe", `probe: ${(c.probe || {}).state}`, "ok");
  setPill("pill-clip", `clip: ${(c.clip || {}).state}`, (c.clip || {}).ok ? "ok" : "warn");
  const b = c.broker || {};
  setPill("pill-broker", b.state ? `broker: ${b.state}` :
    `broker: ${b.ok ? "connected" : "away"} · outbox ${b.outbox_pending ?? "?"}`, b.ok ? "ok" : "warn");
  const d = c.disk || {};
  setPill("pill-disk", `disk: ${d.free_mb === null ? "?" : (d.free_mb / 1000).toFixed(1)} GB free`, d.ok ? "ok" : "bad");
  setPill("pill-health", h.status + (c.simulated ? " (simulated parts)" : ""),
    h.status === "ok" ? "ok" : h.status === "degraded" ? "warn" : "bad");
}

function adopt(id) {
  // A session started elsewhere (another screen, a script), or a page opened mid-session:
  // follow it, with the gliding trace it has so far.
  S.current = id; S.trace = []; drawTrace();
  api("GET", `/api/v1/sessions/${id}/trace`).then((t) => {
    if (S.current === id) { S.trace = t.points.concat(S.trace); drawTrace(); }
  }).catch(() => {});
  $("state").textContent = "acquiring";
  $("start").disabled = true; $("stop").disabled = false;
}

async function onSessionEvent(m) {
  if (m.state === "acquiring" && m.id !== S.current) adopt(m.id);
  if (m.id === S.current) {
    $("state").textContent = m.state;
    if (m.state !== "acquiring") { $("stop").disabled = true; $("start").disabled = false; }
    if (m.state === "done" || m.state === "failed") showSession(m.id);
  }
  refreshList();
}

// ---- control -----------------------------------------------------------------------------
$("start").onclick = async () => {
  $("msg").textContent = "";
  try {
    const r = await api("POST", "/api/v1/sessions", {
      side: $("side").value, protocol: $("protocol").value,
      accession_number: $("acc").value.trim(), patient_id: $("pid").value.trim(),
    });
    S.current = r.id; S.trace = []; drawTrace();
    $("state").textContent = "acquiring";
    $("start").disabled = true; $("stop").disabled = false;
    refreshList();
  } catch (e) { $("msg").textContent = `Cannot start: ${e.message}`; }
};

$("stop").onclick = async () => {
  if (!S.current) return;
  try {
    await api("POST", `/api/v1/sessions/${S.current}/stop`);
    $("stop").disabled = true;
    $("state").textContent = "analysing";
  } catch (e) { $("msg").textContent = `Cannot stop: ${e.message}`; }
};

// ---- results -----------------------------------------------------------------------------
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

async function showSession(id) {
  const d = await api("GET", `/api/v1/sessions/${id}`);
  document.querySelectorAll("#sessions tr").forEach((tr) => tr.classList.toggle("sel", tr.dataset.id === id));
  const r = d.result;
  let h = `<p>Session <code>${esc(d.id)}</code> · ${esc(d.side)} · ${esc(d.protocol)} · order ${esc(d.accession_number)} · patient ${esc(d.patient_id)} · <b class="sstate">${esc(d.state)}</b></p>`;
  if (d.error) h += `<p class="err">${esc(d.error)}</p>`;
  if (d.ended_reason) h += `<p>Ended: ${esc(d.ended_reason)}</p>`;
  if (r) {
    h += `<ul class="findings">${(r.findings || []).map((f) => `<li>${esc(f)}</li>`).join("")}</ul>`;
    const dq = r.data_quality || {};
    h += `<p>Frames recorded ${dq.frames_recorded ?? dq.n_frames}, analysed ${dq.frames_analysed ?? dq.n_frames}, dropped for detection ${dq.dropped_for_detection ?? 0}, by source ${dq.dropped_by_source ?? 0}, frozen ${dq.frozen_frames ?? 0}.</p>`;
    h += `<p><a id="report-link" href="${d.report_url}" target="_blank">Report (printable)</a> · <a id="pdf-link" href="${d.report_pdf_url}">PDF</a>`;
    if (!d.published) h += ` · <button id="publish" data-id="${esc(d.id)}">Publish</button> <button id="discard" data-id="${esc(d.id)}">Discard</button> <button id="relabel" data-id="${esc(d.id)}">Switch side</button> <button id="reorder" data-id="${esc(d.id)}">Use the typed order</button>`;
    else h += ` · published (version ${esc(r.version || 1)}) <button id="correct" data-id="${esc(d.id)}">Correct: switch side (new version)</button>`;
    h += "</p>";
  }
  $("result").innerHTML = h;
  const bind = (bid, fn) => { const b = $(bid); if (b) b.onclick = fn; };
  bind("publish", async () => { await api("POST", `/api/v1/sessions/${id}/publish`); showSession(id); refreshList(); });
  bind("discard", async () => {
    if (!confirm("Discard this session?")) return;
    await api("DELETE", `/api/v1/sessions/${id}`); $("result").innerHTML = "<p>Discarded.</p>"; $("comparison").innerHTML = ""; refreshList();
  });
  bind("relabel", async () => {
    await api("PATCH", `/api/v1/sessions/${id}`, { side: d.side === "left" ? "right" : "left" }); showSession(id); refreshList();
  });
  bind("correct", async () => {
    // A published result is corrected as version n+1 (MQTT, PACS SR, FHIR amended).
    if (!confirm("Publish a corrected version with the other side?")) return;
    try {
      await api("POST", `/api/v1/sessions/${id}/correct`, { side: d.side === "left" ? "right" : "left" });
      showSession(id); refreshList();
    } catch (e) { $("msg").textContent = `Cannot correct: ${e.message}`; }
  });
  bind("reorder", async () => {
    try {
      await api("PATCH", `/api/v1/sessions/${id}`, { accession_number: $("acc").value.trim(), patient_id: $("pid").value.trim() });
      showSession(id); refreshList();
    } catch (e) { $("msg").textContent = `Cannot relabel: ${e.message}`; }
  });
  let c = "";
  for (const cmp of d.comparisons || []) {
    const title = cmp.mode === "contralateral" ? "Left vs right (same order)" : "Follow-up vs earlier visit";
    c += `<div class="cmp" data-mode="${esc(cmp.mode)}"><h3>${title}</h3><ul>${(cmp.summary || []).map((s) => `<li>${esc(s)}</li>`).join("")}</ul></div>`;
  }
  $("comparison").innerHTML = c;
}

async function refreshList() {
  let d;
  try { d = await api("GET", "/api/v1/sessions"); } catch (e) { return; }
  const tb = document.querySelector("#sessions tbody");
  tb.innerHTML = "";
  for (const s of d.sessions) {
    const tr = document.createElement("tr");
    tr.dataset.id = s.id;
    tr.dataset.state = s.state;
    if (s.id === S.current) tr.className = "sel";
    const t = new Date(s.started_t * 1000).toLocaleString();
    const gl = s.restricted === true ? "restricted" : s.restricted === false ? "free" : "—";
    tr.innerHTML = `<td>${esc(t)}</td><td>${esc(s.accession_number)}</td><td>${esc(s.patient_id)}</td><td>${esc(s.side)}</td><td>${esc(s.protocol)}</td><td class="st">${esc(s.state)}${s.published ? " · published" : ""}</td><td>${fmt(s.ap_diameter_mm)}</td><td>${gl}</td><td><a href="#" class="open">open</a></td>`;
    tr.querySelector(".open").onclick = (ev) => { ev.preventDefault(); S.current = s.id; showSession(s.id); };
    tb.appendChild(tr);
  }
}

async function loadWorklist() {
  // Orders from the worklist when one is configured (else they are typed in).
  try {
    const w = await api("GET", "/api/v1/worklist");
    const dl = $("orders");
    dl.innerHTML = "";
    for (const o of w.orders) {
      const opt = document.createElement("option");
      opt.value = o.accession_number; opt.label = o.patient_id; dl.appendChild(opt);
    }
    $("acc").onchange = () => {
      const o = w.orders.find((x) => x.accession_number === $("acc").value.trim());
      if (o) $("pid").value = o.patient_id;
    };
  } catch (e) { /* typed in */ }
}

async function init() {
  connect();
  loadWorklist();
  await refreshList();
  try {
    const st = await api("GET", "/api/v1/status");
    onStatus(st);
    if (st.active) adopt(st.active.id);
  } catch (e) { /* shown by the status pills once the stream is up */ }
  setInterval(refreshList, 5000);
}
init();
