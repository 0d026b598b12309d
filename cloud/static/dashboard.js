// marlids analyst dashboard: plain JS, inline SVG, no external resources.
// Every string from the API is inserted with textContent (never innerHTML): alert evidence is attacker-controlled.
"use strict";
const API = "/api/v1";
const SVGNS = "http://www.w3.org/2000/svg";
let alerts = [];
let selected = null;
let shown = "";  // what the detail pane shows: re-rendered only when the alert changed (keeps a typed note)

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const kid of kids) e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  return e;
}
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
async function api(path, opts) {
  const r = await fetch(API + path, Object.assign({credentials: "same-origin"}, opts || {}));
  if (!r.ok) throw new Error(r.status + " " + (await r.text()).slice(0, 200));
  return r.json();
}
function pad(n) { return String(n).padStart(2, "0"); }
function fmtTime(iso) {
  // ISO 8601 in the browser's local time, with its UTC offset: 2026-11-24T14:22:25+01:00
  const d = new Date(iso), off = -d.getTimezoneOffset(), sign = off >= 0 ? "+" : "-";
  return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" +
    pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + sign + pad(Math.floor(Math.abs(off) / 60)) + ":" + pad(Math.abs(off) % 60);
}
function techniqueLinks(ids) {
  // ATT&CK technique pages: T1498.001 → https://attack.mitre.org/techniques/T1498/001
  if (!ids.length) return "—";
  const out = [];
  ids.forEach((t, i) => { if (i) out.push(", ");
    out.push(el("a", {href: "https://attack.mitre.org/techniques/" + t.replace(".", "/"), target: "_blank",
                      rel: "noopener noreferrer"}, t)); });
  return el("span", {}, ...out);
}
function version(a) { return a.alert_id + "|" + a.updated_at + "|" + a.explanation_status; }

async function loadSites() {
  // Each site's baseline state: learning (grace period, no alerts yet) or detecting.
  try {
    const sites = await api("/sites");
    document.getElementById("sites").replaceChildren(...(sites.length ? sites.map(s => el("span",
      {class: "site-" + s.state, "data-site": s.site_id},
      s.site_id + ": " + (s.state === "learning"
        ? "learning baseline " + Math.min(s.grace_elapsed_s, s.grace_s).toFixed(0) + "/" + s.grace_s.toFixed(0) + " s"
        : "detecting (" + s.devices_own + " devices with their own baseline)"))) : [el("span", {class: "muted"}, "no site reported yet")]));
  } catch (e) { document.getElementById("sites").textContent = "sites: " + e.message; }
}

let incidents = [], incident = null;

async function loadIncidents() {
  // Incidents (alerts of one attack, grouped by the cloud): most recently active first.
  try {
    const page = await api("/incidents?limit=50");
    incidents = page.items;
    document.getElementById("inc-count").textContent = incidents.length + (page.next_cursor ? "+" : "") +
      " — select one to list its alerts";
    document.getElementById("incidents").replaceChildren(...incidents.map(i => el("tr",
      {"data-incident": i.incident_id, class: incident === i.incident_id ? "sel" : "",
       onclick: () => { incident = incident === i.incident_id ? null : i.incident_id; load(); }},
      el("td", {}, fmtTime(i.last_ts)), el("td", {}, el("span", {class: "lvl l" + i.max_level}, i.max_level)),
      el("td", {}, i.attack_class), el("td", {}, el("code", {class: "untrusted"}, i.actor)),
      el("td", {}, i.device_ids.slice(0, 3).join(", ") + (i.device_ids.length > 3 ? " +" + (i.device_ids.length - 3) : "")),
      el("td", {}, String(i.alert_count)), el("td", {class: "st"}, i.status))));
    const acts = document.getElementById("inc-actions");
    const cur = incidents.find(i => i.incident_id === incident);
    acts.replaceChildren(...(cur ? [el("span", {}, "Incident " + cur.attack_class + " by " + cur.actor + ": "),
      ...[["acknowledged", "Acknowledge"], ["false_positive", "False positive"], ["resolved", "Resolve"]].map(([st, label]) =>
        el("button", {class: "inc-triage", "data-status": st, onclick: () => triageIncident(cur, st)}, label + " all its alerts")),
      el("button", {id: "inc-clear", onclick: () => { incident = null; load(); }}, "Show all alerts")] : []));
  } catch (e) { document.getElementById("inc-count").textContent = "error: " + e.message; }
}

async function triageIncident(i, status) {
  await api("/incidents/" + i.incident_id, {method: "PATCH", headers: {"Content-Type": "application/json", "X-Requested-With": "marlids"},
                                            body: JSON.stringify({status: status})});
  load();
}

// -- suppressions: rules that make the fogs count, instead of post, the alerts they match -----------------
const CHANGE = {"Content-Type": "application/json", "X-Requested-With": "marlids"};

async function loadSuppressions() {
  // The active rules, newest first, with who made them, when, their expiry and the fogs' hit counts.
  try {
    const page = await api("/suppressions?limit=100");
    document.getElementById("supp-count").textContent = page.items.length + (page.next_cursor ? "+" : "") + " active";
    document.getElementById("suppressions").replaceChildren(...page.items.map(s => el("tr", {"data-suppression": s.suppression_id},
      el("td", {}, (s.site_id || "any site") + " / " + (s.device_id || "any device")),
      el("td", {}, s.peer ? el("code", {class: "untrusted"}, s.peer) : "any"),
      el("td", {}, s.technique_id ? techniqueLinks([s.technique_id]) : "any"),
      el("td", {class: "supp-reason"}, s.reason), el("td", {class: "supp-by"}, s.created_by),
      el("td", {}, fmtTime(s.created_at)), el("td", {}, s.expires_at ? fmtTime(s.expires_at) : "never"),
      el("td", {class: "supp-hits"}, String(s.hit_count)),
      el("td", {}, el("button", {class: "supp-revoke", title: "End this rule (the fogs drop it at their next refresh)",
                                 onclick: () => revokeSuppression(s)}, "Revoke"),
                   el("button", {class: "supp-audit-btn", onclick: () => showAudit(s.suppression_id)}, "Audit")))));
  } catch (e) { document.getElementById("supp-count").textContent = "error: " + e.message; }
}

let auditShown = null;  // the suppression whose audit is shown

async function showAudit(id) {
  const box = document.getElementById("supp-audit");
  try {
    const [s, audit] = await Promise.all([api("/suppressions/" + id), api("/suppressions/" + id + "/audit?limit=1000")]);
    auditShown = id;
    box.replaceChildren(el("h3", {}, "Audit of the suppression “" + s.reason.slice(0, 80) + "”" + (s.active ? "" : " (inactive)")),
      el("ul", {id: "supp-audit-list"}, ...audit.items.map(e => el("li", {"data-action": e.action},
        fmtTime(e.at) + " · " + e.action + " by " + e.key_name +
        (Object.keys(e.detail).length ? " · " + JSON.stringify(e.detail) : "")))),
      el("button", {id: "supp-audit-close", onclick: () => { auditShown = null; box.replaceChildren(); }}, "Close"));
  } catch (e) { box.replaceChildren(el("p", {class: "err"}, "audit: " + e.message)); }
}

async function revokeSuppression(s) {
  try {
    await api("/suppressions/" + s.suppression_id, {method: "DELETE", headers: CHANGE});
  } catch (e) { document.getElementById("supp-count").textContent = "revoke failed: " + e.message; return; }
  await loadSuppressions();
  if (auditShown === s.suppression_id) showAudit(s.suppression_id);
}

function toggleSuppressForm(a) {
  // A rule made from the alert: its device (with its site), its first technique and, if ticked, its top peer.
  const box = document.getElementById("suppress-box");
  if (box.childNodes.length) { box.replaceChildren(); return; }
  const tech = (a.technique_ids || [])[0], peer = ((a.evidence.peers || [])[0] || {}).address;
  const check = (id, on, label, value) => el("label", {}, el("input", Object.assign({type: "checkbox", id: id}, on ? {checked: ""} : {})),
                                              " " + label + " ", el("code", {class: "untrusted"}, value));
  const kids = [el("div", {class: "muted"}, "The fogs count, instead of post, the alerts that match every ticked field."),
    check("supp-device", true, "device", a.site_id + " / " + a.device_id)];
  if (tech) kids.push(check("supp-technique", true, "technique", tech));
  if (peer) kids.push(check("supp-peer", false, "top peer", peer));
  kids.push(el("label", {}, "expires ", el("select", {id: "supp-expiry"}, el("option", {value: "3600"}, "in 1 hour"),
      el("option", {value: "86400", selected: ""}, "in 24 hours"), el("option", {value: "604800"}, "in 7 days"),
      el("option", {value: ""}, "never"))),
    el("label", {}, "reason (required) ", el("textarea", {id: "supp-reason", rows: 2, maxlength: 500})),
    el("button", {type: "submit", id: "supp-submit"}, "Create suppression"), el("span", {id: "supp-msg"}));
  box.replaceChildren(el("form", {id: "suppress-form", onsubmit: e => { e.preventDefault(); submitSuppression(a); }}, ...kids));
}

async function submitSuppression(a) {
  const msg = document.getElementById("supp-msg"), on = id => { const c = document.getElementById(id); return !!(c && c.checked); };
  const body = {reason: document.getElementById("supp-reason").value.trim(), source_alert_id: a.alert_id};
  if (on("supp-device")) { body.site_id = a.site_id; body.device_id = a.device_id; }
  if (on("supp-technique")) body.technique_id = a.technique_ids[0];
  if (on("supp-peer")) body.peer = a.evidence.peers[0].address;
  const secs = document.getElementById("supp-expiry").value;
  if (secs) body.expires_at = new Date(Date.now() + Number(secs) * 1000).toISOString();
  const fail = text => { msg.className = "err"; msg.textContent = " " + text; };
  if (!body.reason) return fail("give a reason");
  if (!body.device_id && !body.technique_id && !body.peer) return fail("tick at least one of device, technique, peer");
  try {
    const s = await api("/suppressions", {method: "POST", headers: CHANGE, body: JSON.stringify(body)});
    msg.className = "ok"; msg.textContent = " suppression created (" + s.suppression_id.slice(0, 8) + "…)";
    loadSuppressions();
  } catch (e) { fail(e.message); }
}

let want = 100;  // alerts listed: 100 more per "Show 100 more"

function localToIso(v) { return v ? new Date(v).toISOString() : ""; }

async function fetchAlerts(base, q) {
  // Pages of at most 500 (the API's limit) until `want` alerts are listed; returns [items, more?]
  let items = [], cursor = null;
  while (items.length < want) {
    const p = new URLSearchParams(q); p.set("limit", String(Math.min(500, want - items.length)));
    if (cursor) p.set("cursor", cursor);
    const page = await api(base + "?" + p);
    items = items.concat(page.items); cursor = page.next_cursor;
    if (!cursor) return [items, false];
  }
  return [items, true];
}

function sortAlerts(list) {
  const by = document.getElementById("f-sort").value;
  const key = {time: a => [-Date.parse(a.ts)], level: a => [-a.level, -Date.parse(a.ts)],
               device: a => [a.site_id + "/" + a.device_id, -Date.parse(a.ts)]}[by] || (a => [-Date.parse(a.ts)]);
  return list.slice().sort((x, y) => { const a = key(x), b = key(y);
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1; return 0; });
}

function timeline(list) {
  // Alerts over time: up to 60 bars over the listed alerts' span, each coloured by its highest level.
  const box = document.getElementById("timeline");
  if (!list.length) { box.replaceChildren(); return; }
  const ts = list.map(a => Date.parse(a.ts)), t0 = Math.min(...ts), t1 = Math.max(...ts) + 1;
  const n = Math.min(60, Math.max(1, list.length)), step = Math.max(5000, (t1 - t0) / n);
  const bins = Array.from({length: Math.ceil((t1 - t0) / step)}, () => ({n: 0, level: 0}));
  list.forEach((a, i) => { const b = bins[Math.min(bins.length - 1, Math.floor((ts[i] - t0) / step))];
                           b.n++; b.level = Math.max(b.level, a.level); });
  const W = 1200, H = 70, bw = W / bins.length, top = Math.max(...bins.map(b => b.n));
  const colors = ["#64748b", "#0ea5e9", "#eab308", "#f97316", "#dc2626"];
  const s = svg("svg", {viewBox: "0 0 " + W + " " + (H + 16), width: "100%", id: "timeline-chart", role: "img"});
  bins.forEach((b, i) => { if (!b.n) return; const h = Math.max(2, H * b.n / top);
    const r = svg("rect", {x: i * bw + 1, y: H - h, width: Math.max(1, bw - 2), height: h, fill: colors[b.level]});
    r.append(svg("title", {}, b.n + " alert(s) from " + fmtTime(new Date(t0 + i * step).toISOString())));
    s.append(r); });
  s.append(svg("text", {x: 0, y: H + 13}, fmtTime(new Date(t0).toISOString())));
  s.append(svg("text", {x: W, y: H + 13, "text-anchor": "end"}, fmtTime(new Date(t1).toISOString())));
  box.replaceChildren(s);
}

async function load() {
  loadSites();
  loadIncidents();
  loadSuppressions();
  const q = new URLSearchParams();
  const set = (id, key, f) => { const v = document.getElementById(id).value.trim(); if (v) q.set(key, f ? f(v) : v); };
  set("f-status", "status"); set("f-level", "min_level"); set("f-site", "site_id"); set("f-device", "device_id");
  set("f-technique", "technique", v => v.toUpperCase()); set("f-since", "since", localToIso);
  set("f-until", "until", localToIso); set("f-q", "q");
  try {
    const [items, more] = await fetchAlerts(incident ? "/incidents/" + incident + "/alerts" : "/alerts",
                                            incident ? new URLSearchParams() : q);
    alerts = sortAlerts(items);
    document.getElementById("count").textContent = alerts.length + (more ? "+" : "") + " alerts";
    document.getElementById("more").style.display = more ? "" : "none";
    timeline(alerts);
    renderTable();
    if (selected) { const a = alerts.find(x => x.alert_id === selected); if (a && version(a) !== shown) renderDetail(a); }
  } catch (e) { document.getElementById("count").textContent = "error: " + e.message; }
}

function renderTable() {
  const tbody = document.getElementById("alerts");
  tbody.replaceChildren(...alerts.map(a => {
    const tr = el("tr", {"data-id": a.alert_id, class: a.alert_id === selected ? "sel" : "",
                         onclick: () => { selected = a.alert_id; renderTable(); renderDetail(a); }},
      el("td", {}, fmtTime(a.ts)), el("td", {}, el("span", {class: "lvl l" + a.level}, a.level)),
      el("td", {}, el("a", {href: "#", class: "device-link", title: "the device's page: its incidents, alerts and baseline",
                            onclick: e => { e.preventDefault(); e.stopPropagation(); showDevice(a.site_id, a.device_id); }},
                      a.site_id + " / " + a.device_id)), el("td", {}, a.attack_class),
      el("td", {}, techniqueLinks(a.technique_ids)),
      el("td", {class: "ex"}, a.explanation ? a.explanation.summary.slice(0, 110) + (a.explanation.summary.length > 110 ? "…" : "")
                                            : "pending…"),
      el("td", {class: "st"}, a.status));
    return tr;
  }));
}

async function showDevice(site, device) {
  // The device's page (in the detail pane): its site's baseline state, its incidents, and its alerts listed.
  document.getElementById("f-site").value = site; document.getElementById("f-device").value = device;
  incident = null; selected = null; shown = ""; want = 100;
  const d = document.getElementById("detail");
  try {
    const q = new URLSearchParams({limit: "100", site_id: site, device_id: device});
    const [incs, sites] = await Promise.all([api("/incidents?" + q), api("/sites")]);
    const st = sites.find(x => x.site_id === site);
    d.replaceChildren(el("section", {id: "device-page"},
      el("h2", {}, "Device " + device), el("div", {class: "muted"}, "site " + site),
      el("p", {id: "device-baseline"}, !st ? "baseline state of " + site + " not reported yet"
        : st.state === "learning" ? site + " is learning its baseline (" + Math.min(st.grace_elapsed_s, st.grace_s).toFixed(0) +
          "/" + st.grace_s.toFixed(0) + " s): nothing is alerted yet"
        : site + " is detecting (" + st.devices_own + " devices with their own baseline; the others use the site's)"),
      el("h3", {}, "Incidents (" + incs.items.length + (incs.next_cursor ? "+" : "") + ")"),
      el("ul", {id: "device-incidents"}, ...incs.items.map(i => el("li", {},
        el("span", {class: "lvl l" + i.max_level}, i.max_level), " " + i.attack_class + " by ",
        el("code", {class: "untrusted"}, i.actor),
        ", " + i.alert_count + " alert(s), " + fmtTime(i.first_ts) + " … " + fmtTime(i.last_ts) + " — " + i.status))),
      el("p", {class: "muted"}, "Its alerts are listed on the left (site and device filters set).")));
  } catch (e) { d.replaceChildren(el("p", {}, "device page: " + e.message)); }
  load();
}

function featureChart(features) {
  // Grouped horizontal bars: value (orange) vs benign baseline (grey), each feature scaled to its own max.
  const rowH = 34, left = 190, width = 460, h = Math.max(1, features.length) * rowH + 24;
  const s = svg("svg", {viewBox: "0 0 " + (left + width + 20) + " " + h, width: "100%", id: "feature-chart", role: "img"});
  s.append(svg("text", {x: left, y: 12}, "value (orange) vs benign baseline (grey), per-feature scale"));
  features.forEach((f, i) => {
    const y = 22 + i * rowH, m = Math.max(Math.abs(f.value), Math.abs(f.baseline), 1e-12);
    s.append(svg("text", {x: 4, y: y + 14}, f.name.slice(0, 28)));
    s.append(svg("rect", {x: left, y: y, width: Math.abs(f.value) / m * width, height: 12, fill: "#f97316"}));
    s.append(svg("rect", {x: left, y: y + 14, width: Math.abs(f.baseline) / m * width, height: 12, fill: "#94a3b8"}));
    s.append(svg("text", {x: left + 4, y: y + 10, fill: "#000"}, String(+f.value.toPrecision(4)) +
      (f.z === null || f.z === undefined ? "" : "  (z = " + f.z.toFixed(1) + ")")));
    s.append(svg("text", {x: left + 4, y: y + 24}, String(+f.baseline.toPrecision(4))));
  });
  return s;
}

function attentionChart(points, peaks) {
  const series = (points && points.length ? points : peaks).slice().sort((a, b) => a.t - b.t);
  const w = 650, h = 140, pad = 30;
  const s = svg("svg", {viewBox: "0 0 " + w + " " + h, width: "100%", id: "attention-chart", role: "img"});
  if (!series.length) { s.append(svg("text", {x: pad, y: 20}, "no attention data")); return s; }
  const t0 = series[0].t, t1 = series[series.length - 1].t, span = Math.max(t1 - t0, 1);
  const maxW = Math.max(...series.map(p => p.weight), 1e-9);
  const bw = Math.max(3, (w - 2 * pad) / series.length - 2);
  s.append(svg("line", {x1: pad, y1: h - pad, x2: w - pad, y2: h - pad, stroke: "#334155"}));
  series.forEach(p => {
    const x = pad + (p.t - t0) / span * (w - 2 * pad - bw), bh = p.weight / maxW * (h - 2 * pad);
    const isPeak = peaks.some(q => q.t === p.t);
    s.append(svg("rect", {x: x, y: h - pad - bh, width: bw, height: bh, fill: isPeak ? "#dc2626" : "#0ea5e9"}));
  });
  s.append(svg("text", {x: pad, y: h - 10}, fmtTime(new Date(t0 * 1000).toISOString())));
  s.append(svg("text", {x: w - pad, y: h - 10, "text-anchor": "end"}, fmtTime(new Date(t1 * 1000).toISOString())));
  s.append(svg("text", {x: pad, y: 14}, "temporal attention over the last windows (red: peaks)"));
  return s;
}

async function triage(a, status) {
  const note = document.getElementById("note").value;
  const body = {status: status}; if (note) body.note = note;
  const upd = await api("/alerts/" + encodeURIComponent(a.alert_id), {
    method: "PATCH", headers: {"Content-Type": "application/json", "X-Requested-With": "marlids"},
    body: JSON.stringify(body)});
  const i = alerts.findIndex(x => x.alert_id === upd.alert_id); if (i >= 0) alerts[i] = upd;
  renderTable(); renderDetail(upd);
}

function refs(list) { return el("div", {class: "refs"}, "evidence: " + list.join(", ")); }

function renderDetail(a) {
  const d = document.getElementById("detail");
  const kids = [el("h2", {}, "Level " + a.level + " — " + a.attack_class + " (" + (a.confidence * 100).toFixed(0) + "%)"),
    el("div", {class: "muted"}, a.alert_id + " · " + fmtTime(a.ts) + " · policy " + a.policy_version),
    el("div", {}, el("b", {}, "Status: "), el("span", {id: "status"}, a.status))];
  const x = a.explanation;
  if (x) {
    kids.push(el("h3", {}, "Explanation"), el("p", {id: "summary"}, x.summary), refs(x.evidence_refs),
      el("div", {class: "muted"}, "source: " + x.source + (x.fallback_reason ? " (" + x.fallback_reason.slice(0, 120) + ")" : "")));
    kids.push(el("h3", {}, "ATT&CK techniques"), el("ul", {}, ...x.techniques.map(t =>
      el("li", {}, el("b", {}, t.id + " " + t.name), " — " + t.tactic + ": " + t.why, refs(t.evidence_refs)))));
    kids.push(el("h3", {}, "Suggested checks (observational)"), el("ul", {}, ...x.analyst_actions.map(c =>
      el("li", {}, c.action, refs(c.evidence_refs)))));
    kids.push(el("h3", {}, "Confidence"), el("p", {}, x.confidence_rationale));
  } else {
    kids.push(el("p", {class: "muted", id: "summary"}, "Explanation pending…"));
  }
  kids.push(el("h3", {}, "Top deviating features"), featureChart(a.evidence.top_features));
  kids.push(el("h3", {}, "Attention"), attentionChart(a.evidence.attention, a.evidence.attention_peaks));
  if (a.evidence.protocol_summary) kids.push(el("h3", {}, "Protocol summary"), el("code", {}, a.evidence.protocol_summary));
  const peers = a.evidence.peers || [];
  if (peers.length) kids.push(el("h3", {}, "Who (top peers of the window)"),
    el("table", {id: "peers"}, el("thead", {}, el("tr", {}, ...["peer", "role", "port", "packets", "bytes"].map(h => el("th", {}, h)))),
      el("tbody", {}, ...peers.map((p, i) => el("tr", {},
        el("td", {}, el("code", {class: "untrusted"}, p.address), el("span", {class: "refs"}, " peer:" + i)),
        el("td", {}, p.direction === "in" ? (i === 0 ? "likely attacker (initiated towards the device)" : "initiated towards the device")
                                         : (i === 0 ? "likely target (the device initiated)" : "the device initiated")),
        el("td", {}, p.port ? String(p.port) + (p.ports > 1 ? " +" + (p.ports - 1) + " ports" : "") : "—"),
        el("td", {}, String(p.packets)), el("td", {}, String(p.bytes)))))));
  const untrusted = [["payload_snippets", "payload"], ["mqtt_topics", "MQTT topic"], ["hostnames", "hostname"],
                     ["user_agents", "user agent"], ["dns_names", "DNS name"]]
    .flatMap(([k, label]) => (a.evidence[k] || []).map((v, i) => el("li", {}, el("b", {}, label + " [" + k + ":" + i + "] "),
                                                                   el("code", {class: "untrusted"}, v))));
  if (untrusted.length) kids.push(el("h3", {}, "Observed strings (attacker-controlled, shown as text)"),
                                  el("ul", {id: "untrusted"}, ...untrusted));
  kids.push(el("h3", {}, "Triage"), el("textarea", {id: "note", rows: 2, placeholder: "analyst note"}),
    el("div", {},
      el("button", {id: "btn-ack", onclick: () => triage(a, "acknowledged")}, "Acknowledge"),
      el("button", {id: "btn-fp", onclick: () => triage(a, "false_positive")}, "False positive"),
      el("button", {id: "btn-resolve", onclick: () => triage(a, "resolved")}, "Resolve"),
      el("button", {id: "btn-new", onclick: () => triage(a, "new")}, "Reopen")),
    el("h3", {}, "Suppress"),
    el("button", {id: "btn-suppress", title: "Make the fogs count, instead of post, alerts like this one",
                  onclick: () => toggleSuppressForm(a)}, "Suppress…"),
    el("div", {id: "suppress-box"}));
  d.replaceChildren(...kids);
  shown = version(a);
  if (a.note) document.getElementById("note").value = a.note;
}

for (const id of ["f-status", "f-level", "f-site", "f-device", "f-technique", "f-since", "f-until", "f-q", "f-sort"])
  document.getElementById(id).addEventListener("change", () => { want = 100; load(); });
document.getElementById("more").addEventListener("click", () => { want += 100; load(); });
load();
setInterval(load, 5000);
