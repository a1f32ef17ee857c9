// The centre's live dashboard: charts, the alert table and the fleet, all narrowed by one selection
// that lives in the URL (a link shows a colleague the same alerts; back and forward work). Polls the
// centre for records stored after the last one seen. Every value from a gateway is written with
// textContent, never as HTML. Every word follows the language button, as on the branch console.
"use strict";

const POLL_MS = 250;
const FLEET_MS = 2000;
const CHARTS_MS = 10000;
const MAX_ROWS = 500;
const FIELDS = ["region", "branch", "level", "since", "until", "q"];   // the form's; handled/outcome come from charts
const SELECTION = [...FIELDS, "handled", "outcome"];

const params = new URLSearchParams(location.search);
let lang = params.get("lang") || localStorage.getItem("cg-lang") || "zh";
function t(en, zh) { return lang === "zh" ? zh : en; }

const LEVEL_TEXT = { red: ["red", "红色"], amber: ["amber", "黄色"] };
const OUTCOME_TEXT = { confirmed_fraud: ["confirmed fraud", "确认诈骗"], customer_dissuaded: ["customer dissuaded", "劝阻成功"],
                       false_alarm: ["false alarm", "误报"], police_called: ["police called", "已报警"],
                       none: ["no outcome yet", "尚无结果"] };
const HANDLED_TEXT = { teller: ["1 teller", "一级 柜员"], supervisor: ["2 supervisor", "二级 主管"], police: ["3 police", "三级 报警"],
                       not_recorded: ["level not recorded", "未记录层级"], awaiting_outcome: ["awaiting outcome", "待登记结果"],
                       all: ["all", "合计"] };
const STATE_TEXT = { online: ["online", "在线"], offline: ["offline", "离线"], silent: ["silent", "无心跳"],
                     stopped: ["stopped", "已停止"], unknown: ["unknown", "未知"] };
const ANSWER_TEXT = { yes: ["yes", "是"], no: ["no", "否"], declined: ["would not say", "不愿回答"] };
const word = (table, code) => (table[code] ? t(...table[code]) : String(code).replace(/_/g, " "));

let lastId = 0;
let generation = 0;           // bumps when the selection changes, so a late answer is dropped
const seen = new Set();       // record ids already shown
const rows = new Map();       // "gateway_id/alert_id" -> the alert's <tr>
const totals = { red: 0, amber: 0 };
let fleetData = null;         // the last /api/fleet answer (known regions and branches, tiles)
let chartData = null;         // the last /api/charts answer, redrawn on a language switch
let pageOk = true;
let brokerLink = "unknown";

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

// -- the selection, in the URL ------------------------------------------------------------------
function selection() {
  const q = new URLSearchParams(location.search);
  const sel = {};
  for (const name of SELECTION) { const v = (q.get(name) || "").trim(); if (v) sel[name] = v; }
  return sel;
}

function query(sel, extra) {
  const q = new URLSearchParams();
  for (const name of SELECTION) if (sel[name]) q.set(name, sel[name]);
  for (const [k, v] of Object.entries(extra || {})) q.set(k, v);
  return q;
}

function go(sel) {
  // A new history entry per selection: back returns to the previous one.
  const q = query(sel);
  if (params.get("lang")) q.set("lang", lang);
  const url = location.pathname + (q.toString() ? "?" + q : "");
  if (url !== location.pathname + location.search) history.pushState(null, "", url);
  showSelection();
  reload().catch(() => linkState(false));
  refreshCharts();
}

function showSelection() {
  const sel = selection();
  for (const name of FIELDS) document.getElementById("filter-" + name).value = sel[name] || "";
  const drill = [];
  if (sel.handled) drill.push(t("handled at ", "处置层级：") + word(HANDLED_TEXT, sel.handled));
  if (sel.outcome) drill.push(t("outcome ", "结果：") + word(OUTCOME_TEXT, sel.outcome));
  document.getElementById("drill").hidden = drill.length === 0;
  document.getElementById("drill-text").textContent = drill.join(t(", ", "，"));
  const q = query(sel);
  document.getElementById("export-csv").href = "/export.csv" + (q.toString() ? "?" + q : "");
  document.getElementById("export-pdf").href = "/report?" + query(sel, { lang });
}

function describe(sel) {
  const parts = [];
  if (sel.region) parts.push(t("region ", "地区 ") + "\u201c" + sel.region + "\u201d");
  if (sel.branch) parts.push(t("branch ", "网点 ") + "\u201c" + sel.branch + "\u201d");
  if (sel.level) parts.push(t("level ", "级别 ") + word(LEVEL_TEXT, sel.level));
  if (sel.since) parts.push(t("from ", "起 ") + sel.since);
  if (sel.until) parts.push(t("until ", "止 ") + sel.until);
  if (sel.q) parts.push(t("search ", "搜索 ") + "\u201c" + sel.q + "\u201d");
  if (sel.handled) parts.push(t("handled at ", "处置层级 ") + word(HANDLED_TEXT, sel.handled));
  if (sel.outcome) parts.push(t("outcome ", "结果 ") + word(OUTCOME_TEXT, sel.outcome));
  return parts.join(t(", ", "，"));
}

function emptyText() {
  const sel = selection();
  if (!Object.keys(sel).length) return t("No alerts yet.", "暂无预警。");
  let text = t("No alerts match ", "没有符合以下条件的预警：") + describe(sel) + t(".", "。");
  // A misspelt place matches nothing: say that no gateway reports it, and which do.
  if (fleetData && fleetData.gateways.length) {
    for (const name of ["region", "branch"]) {
      const known = [...new Set(fleetData.gateways.map(g => g[name]))].sort();
      if (sel[name] && !known.includes(sel[name])) {
        text += " " + t(`No gateway reports ${name} \u201c${sel[name]}\u201d (known: ${known.slice(0, 8).join(", ")}).`,
                         `没有网关属于${name === "region" ? "地区" : "网点"}\u201c${sel[name]}\u201d（已知：${known.slice(0, 8).join("、")}）。`);
      }
    }
  }
  return text;
}

// -- the alert table ------------------------------------------------------------------------------
function key(r) { return r.gateway_id + "/" + r.alert_id; }

function trailItem(r) {
  const p = r.payload;
  let text = r.type;
  if (r.type === "acknowledgement") text = t("acknowledged by ", "已响应：") + (p.by === "supervisor" ? t("supervisor", "主管") : p.by)
    + " (" + p.via + ")";
  if (r.type === "outcome") {
    text = t("outcome: ", "结果：") + word(OUTCOME_TEXT, p.outcome) + t(" by ", "，登记人 ") + p.by + (p.note ? " \u2014 " + p.note : "");
    if (p.handled_at) text += " \u00b7 " + word(HANDLED_TEXT, ["", "teller", "supervisor", "police"][p.handled_at]);
  }
  if (r.type === "escalation") text = t("escalated after ", "已升级，等待 ") + Math.round(p.waited_s) + t(" s (", " 秒（") + p.reason + t(")", "）");
  const li = el("li", r.type, text + " \u00b7 " + (p.at || "").slice(11, 19));
  li.dataset.recordId = r.id;
  if (r.type === "outcome" && Array.isArray(p.answers) && p.answers.length) {
    // The caring questions asked and what the customer said ("declined": would not say).
    const list = el("ul", "answers");
    for (const a of p.answers) {
      const item = el("li", "answer " + a.answer, a.question + " \u2014 " + word(ANSWER_TEXT, a.answer));
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
  if (p.historical) raised.appendChild(el("div", "historical", t("sent after an outage", "断线恢复后补发")));
  tr.appendChild(raised);
  const level = el("td"); level.appendChild(el("span", "level " + p.level, word(LEVEL_TEXT, p.level))); tr.appendChild(level);
  const where = el("td", null, p.region + " / " + p.branch);
  where.appendChild(el("div", "text", p.gateway_id));
  tr.appendChild(where);
  tr.appendChild(el("td", null, p.counter));
  tr.appendChild(el("td", null, Number(p.amount).toLocaleString("en-US")));
  const why = el("td", "reasons");
  for (const reason of p.reasons || []) why.appendChild(el("span", "reason", reason));
  why.appendChild(el("div", "text", p.text));
  // Raised by branch staff, not the model: a teller's report, often a miss the model should learn from.
  if (p.raised_by) why.appendChild(el("div", "raised-by", t("raised by branch staff ", "网点员工发起：") + p.raised_by + (p.note ? " \u2014 " + p.note : "")));
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
  const empty = document.getElementById("alerts-empty");
  empty.hidden = body.rows.length > 0;
  delete empty.dataset.error;
  empty.textContent = empty.hidden ? "" : emptyText();
  document.getElementById("total-red").textContent = totals.red;
  document.getElementById("total-amber").textContent = totals.amber;
}

async function getJson(path) {
  const res = await fetch(path, { cache: "no-store" });
  if (res.status === 401) location.assign("/login");   // the session ended (logout elsewhere, expiry, restart)
  if (!res.ok) {
    let why = "";
    try { why = (await res.json()).error; } catch (e) { /* not JSON */ }
    const err = new Error(path + ": " + res.status + (why ? " " + why : ""));
    err.status = res.status; err.why = why;
    throw err;
  }
  return res.json();
}

// The header says "live" only when this page reaches the centre AND the centre holds its broker link.
function linkState(ok, link) {
  if (ok !== undefined) pageOk = ok;
  if (link) brokerLink = link.broker;
  const p = document.getElementById("link-state");
  let state = pageOk ? brokerLink : "unreachable";
  if (state === "unknown" && pageOk) state = "no-intake";
  const text = {
    connected: t("live", "实时"),
    degraded: t("live, but part of the intake has lost the broker", "实时，但部分接收进程与消息服务器断开"),
    disconnected: t("the centre has lost the broker, reconnecting: no new alerts until it is back",
                    "中心与消息服务器断开，正在重连：恢复前不会收到新预警"),
    "no-intake": t("connected to the centre (this dashboard runs without an intake)", "已连接中心（本看板未运行接收进程）"),
    unreachable: t("centre unreachable, retrying", "无法连接中心，正在重试"),
  }[state];
  p.dataset.state = state;
  p.className = state === "connected" || state === "no-intake" ? "link-ok" : "link-lost";
  p.textContent = text;
}

async function reload() {
  const mine = ++generation;
  const empty = document.getElementById("alerts-empty");
  let data;
  try {
    data = await getJson("/api/alerts?" + query(selection()));
  } catch (e) {
    if (e.status === 400) {       // a bad value in the URL or the form: say which
      document.querySelector("#alerts tbody").replaceChildren();
      empty.hidden = false;
      empty.dataset.error = "1";
      empty.textContent = e.why;
      return;
    }
    throw e;
  }
  if (mine !== generation) return;
  seen.clear(); rows.clear(); totals.red = 0; totals.amber = 0;
  document.querySelector("#alerts tbody").replaceChildren();
  show(data.records, false);
  lastId = data.last_id;
  linkState(true);
}

async function poll() {
  const mine = generation;
  try {
    const data = await getJson("/api/records?" + query(selection(), { after: lastId }));
    if (mine === generation) { show(data.records, true); lastId = Math.max(lastId, data.last_id); }
    linkState(true, data.link);
  } catch (e) {
    if (e.status !== 400) linkState(false);
  }
  setTimeout(poll, POLL_MS);
}

// -- charts (Apache ECharts, served by the centre itself) ---------------------------------------
const charts = {};
const RED = ["#c62828", "#e57373", "#8e0000", "#ff8a80", "#b71c1c"];
const AMBER = ["#ef8f00", "#ffcc80", "#b26a00", "#ffb74d", "#e65100"];

function chart(id) {
  if (!charts[id]) {
    charts[id] = echarts.init(document.getElementById(id), null, { locale: lang === "zh" ? "ZH" : "EN", renderer: "canvas" });
    charts[id].on("click", (ev) => drillDown(id, ev));
    // Marks a chart fully drawn (animation over): screenshots and tests wait for it.
    charts[id].on("finished", () => { document.getElementById(id).dataset.drawn = "1"; });
  }
  return charts[id];
}

function bucketLabel(iso, unit) { return unit === "hour" ? iso.slice(5, 10) + " " + iso.slice(11, 13) + ":00" : iso.slice(5, 10); }

function perBucketOption(block) {
  const regions = [...new Set(block.series.map(s => s.region))];
  return {
    aria: { enabled: true },
    tooltip: { trigger: "axis" },
    legend: { type: "scroll", top: 0 },
    grid: { left: 36, right: 12, top: 30, bottom: 28 },
    xAxis: { type: "category", data: block.buckets.map(b => bucketLabel(b, block.unit)) },
    yAxis: { type: "value", minInterval: 1 },
    series: block.series.map(s => ({
      type: "bar", stack: "alerts", name: s.region + " \u00b7 " + word(LEVEL_TEXT, s.level), data: s.counts,
      itemStyle: { color: (s.level === "red" ? RED : AMBER)[regions.indexOf(s.region) % 5] },
    })),
  };
}

function precisionOption(weeks) {
  const pct = (x) => (x === null || x === undefined ? null : Math.round(1000 * x) / 10);
  const lo = weeks.map(w => (w.interval_95 ? pct(w.interval_95[0]) : null));
  const band = weeks.map(w => (w.interval_95 ? pct(w.interval_95[1] - w.interval_95[0]) : null));
  return {
    aria: { enabled: true },
    tooltip: {
      trigger: "axis",
      formatter: (items) => {
        const w = weeks[items[0].dataIndex];
        if (w.precision === null) return w.week + ": " + t("no outcomes yet", "尚无处理结果");
        return `${w.week}: ${pct(w.precision)}% (95%: ${pct(w.interval_95[0])}\u2013${pct(w.interval_95[1])}%, ` +
          t(`${w.judged} outcomes, ${w.alerts} alerts)`, `${w.judged} 条结果，${w.alerts} 条预警）`);
      },
    },
    grid: { left: 40, right: 12, top: 20, bottom: 28 },
    xAxis: { type: "category", data: weeks.map(w => w.week) },
    yAxis: { type: "value", min: 0, max: 100, axisLabel: { formatter: "{value}%" } },
    series: [
      // The interval as a floating bar (an invisible bar up to its low end, then its width): it shows
      // for a single week too, where a shaded area between two lines would not.
      { name: "interval-low", type: "bar", stack: "interval", data: lo, itemStyle: { color: "transparent" },
        barWidth: "40%", silent: true, tooltip: { show: false } },
      { name: t("95 % interval", "95% 置信区间"), type: "bar", stack: "interval", data: band, barWidth: "40%",
        itemStyle: { color: "rgba(198, 40, 40, 0.18)" }, silent: true },
      { name: t("precision", "准确率"), type: "line", data: weeks.map(w => pct(w.precision)), symbolSize: 8,
        itemStyle: { color: "#c62828" }, connectNulls: true },
    ],
  };
}

const OUTCOME_ORDER = ["customer_dissuaded", "confirmed_fraud", "police_called", "false_alarm", "none"];
const OUTCOME_COLOUR = { customer_dissuaded: "#2e7d32", confirmed_fraud: "#c62828", police_called: "#1565c0",
                         false_alarm: "#9e9e9e", none: "#e0e0e0" };

function outcomesOption(rowsByLevel) {
  return {
    aria: { enabled: true },
    tooltip: { trigger: "axis" },
    legend: { top: 0 },
    grid: { left: 36, right: 12, top: 30, bottom: 28 },
    xAxis: { type: "category", data: rowsByLevel.map(r => word(HANDLED_TEXT, r.handled)) },
    yAxis: { type: "value", minInterval: 1 },
    series: OUTCOME_ORDER.map(o => ({ type: "bar", stack: "outcomes", name: word(OUTCOME_TEXT, o),
                                      data: rowsByLevel.map(r => r[o]), itemStyle: { color: OUTCOME_COLOUR[o] } })),
  };
}

function drawCharts() {
  if (!chartData || typeof echarts === "undefined") return;
  // Series replaced (a region may come or go), the rest merged: a refresh with the same numbers
  // does not redraw the bars from zero.
  const how = { replaceMerge: ["series"] };
  for (const id of ["chart-hour", "chart-day", "chart-precision", "chart-outcomes"]) delete document.getElementById(id).dataset.drawn;
  chart("chart-hour").setOption(perBucketOption(chartData.per_hour), how);
  chart("chart-day").setOption(perBucketOption(chartData.per_day), how);
  chart("chart-precision").setOption(precisionOption(chartData.precision_by_week), how);
  chart("chart-outcomes").setOption(outcomesOption(chartData.outcomes_by_level), how);
}

// Clicking a chart element narrows the table (and the other charts) to the alerts behind it.
function drillDown(id, ev) {
  if (!chartData || ev.componentType !== "series") return;
  const sel = selection();
  if (id === "chart-hour" || id === "chart-day") {
    const block = id === "chart-hour" ? chartData.per_hour : chartData.per_day;
    const s = block.series[ev.seriesIndex];
    const start = new Date(block.buckets[ev.dataIndex]);
    sel.since = block.buckets[ev.dataIndex].replace(".000Z", "Z");
    sel.until = new Date(start.getTime() + block.step_s * 1000).toISOString().replace(".000Z", "Z");
    sel.region = s.region; sel.level = s.level;
  } else if (id === "chart-precision") {
    const w = chartData.precision_by_week[ev.dataIndex];
    sel.since = w.since; sel.until = w.until; sel.level = w.level;
  } else if (id === "chart-outcomes") {
    const r = chartData.outcomes_by_level[ev.dataIndex];
    sel.handled = r.handled; sel.outcome = OUTCOME_ORDER[ev.seriesIndex];
  }
  go(sel);
}

let chartsTimer = null;
async function refreshCharts() {
  clearTimeout(chartsTimer);
  try {
    chartData = await getJson("/api/charts?" + query(selection()));
    drawCharts();
  } catch (e) {
    if (e.status !== 400) linkState(false);
  }
  chartsTimer = setTimeout(refreshCharts, CHARTS_MS);
}

// -- the fleet: tiles by region, the table, the rollout ---------------------------------------------
function ageText(s) {
  if (s === null || s === undefined) return t("never", "从未");
  return s < 90 ? Math.round(s) + t(" s ago", " 秒前") : Math.round(s / 60) + t(" min ago", " 分钟前");
}

function driftCell(d) {
  if (!d || !d.judged) return el("td", null, "-");
  const td = el("td", d.warnings.length ? "drift warn" : "drift", d.worst_feature + " " + d.worst_psi.toFixed(2));
  if (d.warnings.length) td.title = d.warnings.join("; ");
  return td;
}

function drawTiles(gateways) {
  const box = document.getElementById("fleet-tiles");
  box.replaceChildren();
  const byRegion = new Map();
  for (const g of gateways) {
    if (!byRegion.has(g.region)) byRegion.set(g.region, []);
    byRegion.get(g.region).push(g);
  }
  for (const [region, list] of [...byRegion.entries()].sort()) {
    const group = el("div", "region");
    group.appendChild(el("h3", null, region));
    for (const g of list) {
      const tile = el("button", "tile " + g.presence, g.branch);
      tile.type = "button";
      tile.dataset.gatewayId = g.gateway_id;
      tile.title = `${g.gateway_id}: ${word(STATE_TEXT, g.presence)}, ${t("heartbeat", "心跳")} ${ageText(g.heartbeat_age_s)}`;
      tile.setAttribute("aria-label", `${g.region} / ${g.branch} ${g.gateway_id}: ${word(STATE_TEXT, g.presence)}`);
      tile.addEventListener("click", () => go({ ...selection(), region: g.region, branch: g.branch }));
      group.appendChild(tile);
    }
    box.appendChild(group);
  }
}

function whyText(w) {
  if (w.why === "offline") return t(`${w.gateway_id}: ${word(STATE_TEXT, w.state)}`, `${w.gateway_id}：${word(STATE_TEXT, w.state)}`);
  if (w.why === "waiting_for_red") return t(`${w.gateway_id}: waiting for its open red alerts to close`,
                                            `${w.gateway_id}：等待未结红色预警处理完毕`);
  if (w.why === "refused") return t(`${w.gateway_id}: refused ${w.rejected} manifest(s); the reason is in its log`,
                                    `${w.gateway_id}：已拒收 ${w.rejected} 份下发，原因见网关日志`);
  return t(`${w.gateway_id}: online, not reported yet`, `${w.gateway_id}：在线，尚未上报`);
}

async function refreshFleet() {
  try {
    const [data, quarantine] = await Promise.all([getJson("/api/fleet"), getJson("/api/quarantine?limit=1")]);
    fleetData = data;
    drawTiles(data.gateways);
    const body = document.querySelector("#gateways tbody");
    body.replaceChildren();
    for (const g of data.gateways) {
      const tr = el("tr");
      tr.dataset.gatewayId = g.gateway_id;
      tr.appendChild(el("td", null, g.gateway_id));
      tr.appendChild(el("td", null, g.region + " / " + g.branch));
      const state = el("td", "state " + g.presence, word(STATE_TEXT, g.presence));
      state.dataset.state = g.presence;
      tr.appendChild(state);
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
      tr.dataset.kind = m.kind;
      for (const v of [m.kind, m.target, m.version, m.applied.length]) tr.appendChild(el("td", null, v));
      const why = el("td", "why");
      if (!m.why.length) why.textContent = "-";
      const list = el("ul", "why-list");
      for (const w of m.why) {
        const li = el("li", "why " + w.why, whyText(w));
        li.dataset.gatewayId = w.gateway_id;
        li.dataset.why = w.why;
        list.appendChild(li);
      }
      if (m.why.length) why.appendChild(list);
      tr.appendChild(why);
      mbody.appendChild(tr);
    }
    // The "no alerts match" line names unknown places once the fleet is known.
    const empty = document.getElementById("alerts-empty");
    if (!empty.hidden && !empty.dataset.error) empty.textContent = emptyText();
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
      const level = r.source === "staff" ? word(LEVEL_TEXT, r.level) + t(" (raised by staff)", "（员工发起）") : word(LEVEL_TEXT, r.level);
      for (const v of [r.group, level, p, r.with_outcome, r.alerts]) tr.appendChild(el("td", null, v));
      body.appendChild(tr);
    }
  } catch (e) {
    linkState(false);
  }
  setTimeout(refreshAccuracy, 10000);
}

async function refreshLevels() {
  try {
    const data = await getJson("/api/levels?by=branch");
    const body = document.querySelector("#level-table tbody");
    body.replaceChildren();
    const pct = (x) => (100 * x).toFixed(1) + "%";
    for (const r of data.rows) {
      const tr = el("tr");
      const handled = word(HANDLED_TEXT, r.handled);
      // A precision is never shown without the labels behind it and its interval.
      const p = r.red_precision === null ? "-"
        : `${pct(r.red_precision)} (${pct(r.red_interval_95[0])}-${pct(r.red_interval_95[1])}, ${r.red_labels})`;
      for (const v of [r.group, handled, r.alerts, r.customer_dissuaded, r.confirmed_fraud, r.police_called,
        r.false_alarms, p]) tr.appendChild(el("td", null, v));
      body.appendChild(tr);
    }
  } catch (e) {
    linkState(false);
  }
  setTimeout(refreshLevels, 10000);
}

// -- language ---------------------------------------------------------------------------------------
function relabel() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-en]").forEach(n => { n.textContent = n.dataset[lang]; });
  const button = document.getElementById("lang");
  button.textContent = lang === "zh" ? "English" : "中文";
  button.lang = lang === "zh" ? "en" : "zh-CN";
  document.title = t("counterguard · anti-fraud centre", "counterguard · 反诈中心");
  linkState();
  showSelection();
}

document.getElementById("lang").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  localStorage.setItem("cg-lang", lang);
  if (params.get("lang")) {
    params.set("lang", lang);
    const q = new URLSearchParams(location.search); q.set("lang", lang);
    history.replaceState(null, "", location.pathname + "?" + q);
  }
  relabel();
  // Charts carry the locale they were made with: make them again in the new language.
  for (const id of Object.keys(charts)) { charts[id].dispose(); delete charts[id]; }
  drawCharts();
  reload().catch(() => linkState(false));
});

document.getElementById("filters").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const sel = selection();
  for (const name of FIELDS) {
    const v = document.getElementById("filter-" + name).value.trim();
    if (v) sel[name] = v; else delete sel[name];
  }
  go(sel);
});
document.getElementById("clear").addEventListener("click", () => go({}));
document.getElementById("drill-clear").addEventListener("click", () => {
  const sel = selection(); delete sel.handled; delete sel.outcome; go(sel);
});
window.addEventListener("popstate", () => {
  showSelection();
  reload().catch(() => linkState(false));
  refreshCharts();
});
window.addEventListener("resize", () => Object.values(charts).forEach(c => c.resize()));

relabel();
reload().catch(() => linkState(false)).finally(() => {
  poll(); refreshFleet(); refreshCharts(); refreshAccuracy(); refreshLevels();
});
