// Branch console: polls the gateway for alerts and posts acknowledgements, outcomes and alerts staff raise.
// Everything from the server is put in the page with textContent, never as HTML.
"use strict";

const POLL_MS = 2000;
const csrf = document.querySelector('meta[name="csrf-token"]').content;
let lang = localStorage.getItem("cg-lang") || "zh";
let last = null;
const drawn = { open: "", awaiting: "", today: "", events: "" };
const KIND_TEXT = { cash_withdrawal: ["cash withdrawal", "取现"], transfer_out: ["transfer out", "转出"] };

function t(en, zh) { return lang === "zh" ? zh : en; }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function clock(epoch) {
  return new Date(epoch * 1000).toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB", { hour12: false });
}

function say(text) {
  const m = document.getElementById("message");
  m.textContent = text;
  m.classList.toggle("hidden", !text);
}

async function post(path, body) {
  const res = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(body || {}),
  });
  const data = await res.json().catch(() => ({}));
  if (res.status === 401) { location.reload(); }
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

function reasonsOf(a) { return a.reasons.map(r => r[lang]).join(t(", ", "，")); }

function card(a, awaiting) {
  const c = el("div", { class: `card ${a.level}${a.escalated ? " escalated" : ""}`, dataset: { alertId: a.alert_id } });
  c.append(el("h3", {}, `${t("Counter", "柜台")} ${a.counter} · ${a.level_text[lang]} · ${clock(a.raised_at)}`));
  c.append(el("p", { class: "reasons" }, reasonsOf(a)));
  c.append(el("p", { class: "quiet" }, `${a.amount.toLocaleString()} ${t("yuan", "元")} · ${a.text}`));
  if (a.raised_by) c.append(el("p", { class: "raised-by" }, `${t("Raised by", "发起人")} ${a.raised_by}` + (a.raise_note ? ` · ${a.raise_note}` : "")));
  if (a.escalated) c.append(el("p", { class: "error" }, t("Escalated to the centre: nobody acknowledged in time", "已上报中心：未及时响应")));
  const qs = a.questions[lang];
  if (qs.length) {
    c.append(el("strong", {}, t("Ask the customer:", "关爱提问：")));
    c.append(el("ul", { class: "questions" }, ...qs.map(q => el("li", {}, q))));
  }
  if (!awaiting) {
    const b = el("button", { class: "ack", type: "button" }, t("Acknowledge", "确认接手"));
    b.addEventListener("click", () => act(b, "/api/ack", { alert_id: a.alert_id }));
    c.append(b);
  } else {
    c.append(el("p", { class: "quiet" }, `${t("Acknowledged by", "接手人")} ${a.ack_by} (${a.ack_via}) ${clock(a.ack_at)}`));
    const select = el("select", { class: "outcome" },
      ...last.outcomes.map(o => el("option", { value: o.code }, o[lang])));
    const note = el("textarea", { class: "note", maxlength: "2000", placeholder: t("Note (what happened)", "备注（处理经过）") });
    const answers = answerForm(a);
    const b = el("button", { class: "record", type: "button" }, t("Record outcome", "登记结果"));
    b.addEventListener("click", () => act(b, "/api/outcome",
      { alert_id: a.alert_id, outcome: select.value, note: note.value, answers: chosen(answers) }));
    c.append(answers, select, note, b);
  }
  return c;
}

// The caring questions with what the customer answered; "not asked" (the default) records nothing.
function answerForm(a) {
  const box = el("fieldset", { class: "answers" }, el("legend", {}, t("Customer's answers", "客户回答")));
  for (const q of a.asked) {
    const pick = el("select", { class: "answer", dataset: { key: q.key }, "aria-label": q.key },
      el("option", { value: "" }, t("not asked", "未问")),
      ...last.answer_words.map(w => el("option", { value: w.code }, w[lang])));
    box.append(el("label", { class: "asked" }, el("span", {}, q[lang] || q.en || q.zh), pick));
  }
  return box;
}

function chosen(box) {
  const out = {};
  box.querySelectorAll("select.answer").forEach(s => { if (s.value) out[s.dataset.key] = s.value; });
  return out;
}

function answerText(a) {
  const word = (last.answer_words.find(w => w.code === a.answer) || {})[lang] || a.answer;
  return `${a[lang] || a.en || a.zh} \u2014 ${word}`;
}

async function act(button, path, body) {
  button.disabled = true;
  try {
    await post(path, body);
    say("");
    await refresh();
  } catch (e) {
    say(e.message);
    button.disabled = false;
  }
}

function keep(container) {
  // Half-typed notes and chosen outcomes survive a redraw.
  const kept = {};
  container.querySelectorAll(".card").forEach(c => {
    const note = c.querySelector(".note"), sel = c.querySelector(".outcome");
    if (note) kept[c.dataset.alertId] = { note: note.value, outcome: sel.value, answers: chosen(c) };
  });
  return kept;
}

function drawCards(id, alerts, awaiting) {
  const sig = lang + JSON.stringify(alerts.map(a => [a.alert_id, a.state, a.escalated]));
  if (drawn[id] === sig) return;
  drawn[id] = sig;
  const box = document.getElementById(id);
  const kept = keep(box);
  box.replaceChildren(...alerts.map(a => card(a, awaiting)));
  box.querySelectorAll(".card").forEach(c => {
    const k = kept[c.dataset.alertId];
    if (k) {
      c.querySelector(".note").value = k.note;
      c.querySelector(".outcome").value = k.outcome;
      c.querySelectorAll("select.answer").forEach(s => { s.value = k.answers[s.dataset.key] || ""; });
    }
  });
}

function drawToday(alerts) {
  const sig = lang + JSON.stringify(alerts.map(a => [a.alert_id, a.state]));
  if (drawn.today === sig) return;
  drawn.today = sig;
  const rows = alerts.map(a => el("tr", { dataset: { alertId: a.alert_id } },
    el("td", {}, clock(a.raised_at)), el("td", {}, a.counter), el("td", {}, a.level_text[lang]),
    el("td", {}, reasonsOf(a)),
    el("td", {}, a.ack_by ? `${a.ack_by} · ${a.response_s} s` : t("waiting", "等待中")),
    el("td", {}, a.outcome ? a.outcome_text[lang] + (a.note ? ` · ${a.note}` : "") : "",
      ...(a.answers.length ? [el("ul", { class: "answers" }, ...a.answers.map(x => el("li", { dataset: { key: x.key } }, answerText(x))))] : []))));
  document.querySelector("#today tbody").replaceChildren(...rows);
}

// The last events at each counter, each with a way to raise an alert the model did not.
function drawEvents(events) {
  const sig = lang + JSON.stringify(events.map(e => [e.event_id, e.open_alerts]));
  if (drawn.events === sig) return;
  const box = document.querySelector("#events tbody");
  if (box.querySelector("textarea:focus, select:focus")) return;  // do not redraw under someone typing a note
  drawn.events = sig;
  box.replaceChildren(...events.map(e => {
    const kind = KIND_TEXT[e.kind] ? t(...KIND_TEXT[e.kind]) : e.kind;
    const cell = el("td", { class: "report" });
    if (e.open_alerts.includes("red")) {
      cell.append(el("span", { class: "quiet" }, t("red alert open", "红色预警处理中")));
    } else {
      const level = el("select", { class: "raise-level", "aria-label": t("level", "级别") },
        el("option", { value: "red" }, t("red: hold, call the supervisor", "红：暂停业务，通知主管")),
        ...(e.open_alerts.includes("amber") ? [] : [el("option", { value: "amber" }, t("amber: ask the caring questions", "黄：关爱提问"))]));
      const note = el("textarea", { class: "raise-note", maxlength: String(last.raise_note_max),
        placeholder: t("What did you notice?", "您注意到了什么？") });
      const b = el("button", { class: "raise", type: "button" }, t("Report", "发起预警"));
      b.addEventListener("click", () => act(b, "/api/raise", { event_id: e.event_id, level: level.value, note: note.value }));
      cell.append(level, note, b);
    }
    return el("tr", { class: e.level, dataset: { eventId: e.event_id } },
      el("td", {}, clock(e.received_wall)), el("td", {}, e.counter), el("td", {}, `${e.amount.toLocaleString()} ${t("yuan", "元")}`),
      el("td", {}, kind), el("td", { class: "verdict" }, e.level_text[lang]), cell);
  }));
}

function draw() {
  if (!last) return;
  drawCards("open", last.open, false);
  drawCards("awaiting", last.awaiting_outcome, true);
  document.getElementById("no-open").classList.toggle("hidden", last.open.length > 0);
  drawToday(last.today);
  drawEvents(last.events);
}

function relabel() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-en]").forEach(n => { n.textContent = n.dataset[lang]; });
  document.getElementById("lang").textContent = lang === "zh" ? "English" : "中文";
}

async function refresh() {
  try {
    const res = await fetch("/api/state", { credentials: "same-origin", cache: "no-store" });
    if (res.status === 401) { location.reload(); return; }
    last = await res.json();
    document.getElementById("connection").classList.add("hidden");
    draw();
  } catch (e) {
    document.getElementById("connection").classList.remove("hidden");
  }
}

document.getElementById("lang").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  localStorage.setItem("cg-lang", lang);
  relabel();
  draw();
});
document.getElementById("logout").addEventListener("click", async () => {
  try { await post("/logout"); } finally { location.reload(); }
});

relabel();
refresh();
setInterval(refresh, POLL_MS);
