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
  // injection guidance
  alarms: [],          // every alarm event received: {kind, level, state, frame_t, recv}
  active: {},          // kind -> active alarm
  beeps: 0,            // audible alarms played (WebAudio)
  audio: null,
  procedure: null,     // latest procedure overlay {needle, state}
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
    if (m.type === "alarm") onAlarm(m);
    else if (m.type === "overlay") onOverlay(m);
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
  const p = o.procedure;
  if (p && p.needle && p.needle.found && p.needle.tip_px) {
    // needle points are [row, col]; the canvas draws (x = col, y = row)
    const lv = (p.state || {}).level;
    const col = lv === "stop" ? "#ff3b30" : lv === "caution" ? "#ffb000" : "#00e5ff";
    const [tr, tc] = p.needle.tip_px;
    if (p.needle.trajectory_end_px) {
      g.setLineDash([6, 6]); g.strokeStyle = "#cfd8dc"; g.lineWidth = 1.5; g.beginPath();
      g.moveTo(tc, tr); g.lineTo(p.needle.trajectory_end_px[1], p.needle.trajectory_end_px[0]); g.stroke();
      g.setLineDash([]);
    }
    if (p.needle.shaft_start_px) {
      g.strokeStyle = col; g.lineWidth = 3; g.beginPath();
      g.moveTo(p.needle.shaft_start_px[1], p.needle.shaft_start_px[0]); g.lineTo(tc, tr); g.stroke();
    }
    g.strokeStyle = col; g.lineWidth = 2; g.beginPath(); g.arc(tc, tr, 7, 0, 2 * Math.PI); g.stroke();
    if ((p.state || {}).on_target) { g.fillStyle = "#5fd17a"; g.font = "bold 16px sans-serif"; g.fillText("ON TARGET", tc + 10, tr - 10); }
  }
}

// ---- injection guidance ------------------------------------------------------------------
function beep(freq, ms) {
  if (!$("sound").checked) return;
  try {
    if (!S.audio) S.audio = new (window.AudioContext || window.webkitAudioContext)();
    const ctx = S.audio, osc = ctx.createOscillator(), gain = ctx.createGain();
    osc.type = "square"; osc.frequency.value = freq; gain.gain.value = 0.15;
    osc.connect(gain); gain.connect(ctx.destination);
    osc.start(); osc.stop(ctx.currentTime + ms / 1000);
    S.beeps += 1;
  } catch (e) { /* no audio device: the banner still shows */ }
}

let stopTimer = null;
function onAlarm(m) {
  S.alarms.push({ kind: m.kind, level: m.level, state: m.state, frame_t: m.frame_t, recv: Date.now() });
  if (S.alarms.length > 5000) S.alarms.shift();
  if (m.state === "raised") S.active[m.kind] = m; else delete S.active[m.kind];
  const li = document.createElement("li");
  li.className = m.level;
  li.dataset.kind = m.kind;
  li.textContent = `${new Date(m.frame_t * 1000).toLocaleTimeString()} ${m.state === "raised" ? "▲" : "▽"} ${m.message}`;
  $("alarm-log").prepend(li);
  renderAlarm();
  if (m.state === "raised") beep(m.level === "stop" ? 880 : 520, m.level === "stop" ? 250 : 150);
}

function renderAlarm() {
  const act = Object.values(S.active);
  const el = $("alarm");
  const stop = act.filter((a) => a.level === "stop"), caution = act.filter((a) => a.level === "caution");
  const top = stop.length ? stop : caution;
  el.className = `alarm ${stop.length ? "stop" : caution.length ? "caution" : "none"}`;
  el.dataset.kinds = act.map((a) => a.kind).join(" ");
  el.textContent = top.length ? top.map((a) => a.message).join(" · ") : "No alarm";
  if (stop.length && !stopTimer) stopTimer = setInterval(() => beep(880, 200), 700);
  if (!stop.length && stopTimer) { clearInterval(stopTimer); stopTimer = null; }
}

function showProcedurePanel(on) {
  $("procedure").hidden = !on;
  $("angles").hidden = on;
}

function onProcedure(p) {
  S.procedure = p;
  showProcedurePanel(true);
  const st = p.state || {};
  $("d-nerve").textContent = fmt(st.nerve_distance_mm);
  $("d-path").textContent = fmt(st.path_nerve_distance_mm);
  $("d-calc").textContent = fmt(st.calcification_distance_mm);
  $("p-motion").textContent = st.needle_found ? st.motion : "not seen";
  $("p-target").textContent = st.on_target ? "ON TARGET" : "—";
  $("p-target").className = st.on_target ? "ontarget" : "";
  $("p-reason").textContent = st.on_target ? "" : st.on_target_reason || "";
  $("p-inj").textContent = st.injections;
  $("p-vol").textContent = fmt(st.volume_ml, 2);
  $("p-passes").textContent = st.passes;
  $("p-redirects").textContent = st.redirects;
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
  if (o.procedure) onProcedure(o.procedure);
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
  S.statusSeen = true;   // the live socket is open and subscribed (tests/benchmarks wait on it)
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
  if ($("protocol").value === "injection") {
    // the click is the user gesture browsers require before a page may play sound
    try { if (!S.audio) S.audio = new (window.AudioContext || window.webkitAudioContext)(); S.audio.resume(); } catch (e) { /* silent */ }
    S.active = {}; $("alarm-log").innerHTML = ""; renderAlarm(); showProcedurePanel(true);
  } else showProcedurePanel(false);
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
  if (r && r.schema === "dgs.procedure-result/1") h += procedureHtml(r, d);
  else if (r) {
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

function procedureHtml(r, d) {
  const t0 = r.started_t, rel = (t) => (t === null || t === undefined ? "—" : `+${(t - t0).toFixed(1)} s`);
  const n = r.needle, p = r.passes;
  let h = `<div class="proc"><ul class="findings">`;
  h += `<li id="r-inj">${r.injections.length} injection(s), ${fmt(r.total_volume_ml_est, 2)} mL estimated, ${r.findings.injections_on_target} on target</li>`;
  h += `<li id="r-min">closest tip–nerve distance ${fmt(n.min_nerve_distance_mm)} mm${n.entered_nerve ? " — the tip entered the nerve outline" : ""}</li>`;
  h += `<li>passes: ${p.advances} advance(s), ${p.withdrawals} withdrawal(s), ${p.redirects} redirect(s)</li>`;
  if (r.findings.spread_reached_epineurium) h += "<li>the injectate spread reached the epineurium</li>";
  if (r.followup) h += `<li>${esc(r.followup.note)}</li>`;
  h += "</ul><table><tr><th>#</th><th>time</th><th>mL (est.)</th><th>to calcification mm</th><th>to nerve mm</th><th>on target</th></tr>";
  for (const i of r.injections) h += `<tr><td>${i.index}</td><td>${rel(i.t_start)}</td><td>${fmt(i.volume_ml_est, 2)}</td><td>${fmt(i.calcification_distance_mm)}</td><td>${fmt(i.nerve_distance_mm)}</td><td>${i.on_target ? "yes" : "no"}</td></tr>`;
  h += "</table><h3>Alarms</h3><ul>";
  for (const a of r.alarms) h += `<li class="${esc(a.level)}">${rel(a.t_raised)} ${esc(a.message)}${a.duration_s !== null ? ` (${fmt(a.duration_s)} s)` : ""}</li>`;
  h += "</ul>";
  const dq = r.data_quality;
  h += `<p>Frames analysed ${dq.frames}, needle seen in ${fmt(100 * (dq.needle_found_fraction || 0), 0)} %, frozen ${dq.frames_frozen}. ${(dq.notes || []).map(esc).join(" ")}</p></div>`;
  h += `<p><a id="report-link" href="${d.report_url}" target="_blank">Report (printable)</a> · <a id="pdf-link" href="${d.report_pdf_url}">PDF</a>`;
  if (!d.published) h += ` · <button id="publish" data-id="${esc(d.id)}">Publish</button> <button id="discard" data-id="${esc(d.id)}">Discard</button>`;
  else h += " · published";
  return h + "</p>";
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
  const want = new URLSearchParams(location.search).get("protocol");
  if (want && [...$("protocol").options].some((o) => o.value === want)) {
    $("protocol").value = want;
    showProcedurePanel(want === "injection");
  }
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
