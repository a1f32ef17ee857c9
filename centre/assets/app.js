// The centre's live dashboard: polls the centre for records stored after the last one seen and
// renders them. Every value from a gateway is written with textContent, never as HTML.
"use strict";

const POLL_MS = 250;
const FLEET_MS = 2000;
const MAX_ROWS = 500;
const TRAIL_NAMES = { acknowledgement: "acknowledged", outcome: "outcome", escalation: "escalated" };
const OUTCOME_NAMES = { confirmed_fraud: "confirmed fraud", customer_dissuaded: "customer dissuaded",
                        false_alarm: "false alarm", police_called: "police called" };
const ANSWER_NAMES = { yes: "yes", no: "no", declined: "would not say" };

let lastId = 0;
let generation = 0;           // bumps when the filters change, so a late answer is dropped
const seen = new Set();       // record ids already shown
const rows = new Map();       // "gateway_id/alert_id" -> the alert's <tr>
const totals = { red: 0, amber: 0 };

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function filters() {
  const q = new URLSearchParams();
  for (const name of ["region", "branch", "level"]) {
    const v = document.getElementById("filter-" + name).value.trim();
    if (v) q.set(name, v);
  }
  return q;
}

function key(r) { return r.gateway_id + "/" + r.alert_id; }

function trailItem(r) {
  const p = r.payload;
  let text = TRAIL_NAMES[r.type] || r.type;
  if (r.type === "acknowledgement") text += " by " + p.by + " (" + p.via + ")";
  if (r.type === "outcome") text += ": " + (OUTCOME_NAMES[p.outcome] || p.outcome) + " by " + p.by + (p.note ? " \u2014 " + p.note : "");
  if (r.type === "escalation") text += " after " + Math.round(p.waited_s) + " s (" + p.reason + ")";
  const li = el("li", r.type, text + " \u00b7 " + (p.at || "").slice(11, 19));
  li.dataset.recordId = r.id;
  if (r.type === "outcome" && Array.isArray(p.answers) && p.answers.length) {
    // The caring questions asked and what the customer said ("declined": would not say).
    const list = el("ul", "answers");
    for (const a of p.answers) {
      const item = el("li", "answer " + a.answer, a.question + " \u2014 " + ANSWER_NAMES[a.answer]);
      item.dataset.key = a.key;
      item.title = a.key;
      list.appendChild(item);
    }
    li.appendChild(list);
  }
  return li;
}

function alertRow(r) {
  const p = r.payload;
  const tr = el("tr", "alert fresh " + p.level);
  tr.dataset.alertId = p.alert_id;
  tr.dataset.gatewayId = p.gateway_id;
  tr.dataset.level = p.level;
  tr.dataset.recordId = r.id;
  const raised = el("td", null, (p.raised_at || "").replace("T", " ").slice(0, 19));
  if (p.historical) raised.appendChild(el("div", "historical", "sent after an outage"));
  tr.appendChild(raised);
  const level = el("td"); level.appendChild(el("span", "level " + p.level, p.level)); tr.appendChild(level);
  const where = el("td", null, p.region + " / " + p.branch);
  where.appendChild(el("div", "text", p.gateway_id));
  tr.appendChild(where);
  tr.appendChild(el("td", null, p.counter));
  tr.appendChild(el("td", null, Number(p.amount).toLocaleString("en-US")));
  const why = el("td", "reasons");
  for (const reason of p.reasons || []) why.appendChild(el("span", "reason", reason));
  why.appendChild(el("div", "text", p.text));
  // Raised by branch staff, not the model: a teller's report, often a miss the model should learn from.
  if (p.raised_by) why.appendChild(el("div", "raised-by", "raised by branch staff " + p.raised_by + (p.note ? " \u2014 " + p.note : "")));
  tr.appendChild(why);
  const follow = el("td"); follow.appendChild(el("ul", "trail")); tr.appendChild(follow);
  return tr;
}

function show(records, fresh) {
  const body = document.querySelector("#alerts tbody");
  for (const r of records) {
    if (seen.has(r.id)) continue;
    if (r.type === "alert") {
      seen.add(r.id);
      const tr = alertRow(r);
      tr.dataset.shownAt = String(performance.timeOrigin + performance.now());
      if (!fresh) tr.classList.remove("fresh");
      rows.set(key(r), tr);
      body.insertBefore(tr, body.firstChild);
      totals[r.level] = (totals[r.level] || 0) + 1;
    } else {
      const tr = rows.get(key(r));
      if (!tr) continue;          // a follow-up of an alert not on screen
      seen.add(r.id);
      tr.querySelector(".trail").appendChild(trailItem(r));
    }
  }
  while (body.rows.length > MAX_ROWS) {
    const last = body.rows[body.rows.length - 1];
    rows.delete(last.dataset.gatewayId + "/" + last.dataset.alertId);
    last.remove();
  }
  document.getElementById("alerts-empty").hidden = body.rows.length > 0;
  document.getElementById("total-red").textContent = totals.red;
  document.getElementById("total-amber").textContent = totals.amber;
}

async function getJson(path) {
  const res = await fetch(path, { cache: "no-store" });
  if (res.status === 401) location.assign("/login");   // the session ended (logout elsewhere, expiry, restart)
  if (!res.ok) throw new Error(path + ": " + res.status);
  return res.json();
}

function linkState(ok) {
  const p = document.getElementById("link-state");
  p.className = ok ? "link-ok" : "link-lost";
  p.textContent = ok ? "live" : "centre unreachable, retrying";
}

async function reload() {
  const mine = ++generation;
  const data = await getJson("/api/alerts?" + filters());
  if (mine !== generation) return;
  seen.clear(); rows.clear(); totals.red = 0; totals.amber = 0;
  document.querySelector("#alerts tbody").replaceChildren();
  show(data.records, false);
  lastId = data.last_id;
}

async function poll() {
  const mine = generation;
  try {
    const q = filters(); q.set("after", lastId);
    const data = await getJson("/api/records?" + q);
    if (mine === generation) { show(data.records, true); lastId = Math.max(lastId, data.last_id); }
    linkState(true);
  } catch (e) {
    linkState(false);
  }
  setTimeout(poll, POLL_MS);
}

function ageText(s) {
  if (s === null || s === undefined) return "never";
  return s < 90 ? Math.round(s) + " s ago" : Math.round(s / 60) + " min ago";
}

function driftCell(d) {
  if (!d || !d.judged) return el("td", null, "-");
  const td = el("td", d.warnings.length ? "drift warn" : "drift", d.worst_feature + " " + d.worst_psi.toFixed(2));
  if (d.warnings.length) td.title = d.warnings.join("; ");
  return td;
}

async function refreshFleet() {
  try {
    const [data, quarantine] = await Promise.all([getJson("/api/fleet"), getJson("/api/quarantine?limit=1")]);
    const body = document.querySelector("#gateways tbody");
    body.replaceChildren();
    for (const g of data.gateways) {
      const tr = el("tr");
      tr.dataset.gatewayId = g.gateway_id;
      tr.appendChild(el("td", null, g.gateway_id));
      tr.appendChild(el("td", null, g.region + " / " + g.branch));
      tr.appendChild(el("td", "state " + g.presence, g.presence));
      tr.appendChild(el("td", null, ageText(g.heartbeat_age_s)));
      tr.appendChild(el("td", null, g.outbox_depth ?? "-"));
      for (const v of [g.model_version, g.watchlist_version, g.thresholds_version, g.downlink_rejected]) {
        tr.appendChild(el("td", null, v ?? "-"));
      }
      tr.appendChild(driftCell(g.drift));
      body.appendChild(tr);
    }
    const c = data.counts;
    document.getElementById("total-online").textContent = c.online || 0;
    document.getElementById("total-down").textContent = (c.offline || 0) + (c.silent || 0);
    document.getElementById("total-quarantine").textContent = quarantine.count;
    const cbody = document.querySelector("#canary-table tbody");
    cbody.replaceChildren();
    for (const c of (data.canaries || []).slice().reverse()) {
      const tr = el("tr", c.state === "rolled_back" ? "rolled-back" : null);
      for (const v of [c.challenger, c.state.replace("_", " "), c.gateways.join(", "), c.reason || "-"]) tr.appendChild(el("td", null, v));
      cbody.appendChild(tr);
    }
    const mbody = document.querySelector("#manifests tbody");
    mbody.replaceChildren();
    for (const m of data.rollout) {
      const tr = el("tr");
      for (const v of [m.kind, m.target, m.version, m.applied.length, m.pending.join(", ") || "-"]) tr.appendChild(el("td", null, v));
      mbody.appendChild(tr);
    }
  } catch (e) {
    linkState(false);
  }
  setTimeout(refreshFleet, FLEET_MS);
}

async function refreshAccuracy() {
  try {
    const data = await getJson("/api/accuracy?by=branch");
    const body = document.querySelector("#precision tbody");
    body.replaceChildren();
    for (const r of data.rows) {
      const tr = el("tr");
      const p = r.precision === null ? "-" : (100 * r.precision).toFixed(1) + "%";
      // Alerts staff raised themselves are judged apart from the model's warnings.
      const level = r.source === "staff" ? r.level + " (raised by staff)" : r.level;
      for (const v of [r.group, level, p, r.with_outcome, r.alerts]) tr.appendChild(el("td", null, v));
      body.appendChild(tr);
    }
  } catch (e) {
    linkState(false);
  }
  setTimeout(refreshAccuracy, 10000);
}

document.getElementById("filters").addEventListener("submit", (ev) => { ev.preventDefault(); reload(); });
reload().catch(() => linkState(false)).finally(() => { poll(); refreshFleet(); refreshAccuracy(); });
