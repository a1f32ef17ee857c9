// Branch console: polls the gateway for alerts and posts acknowledgements, outcomes and alerts staff raise.
// Everything from the server is put in the page with textContent, never as HTML.
// Every word on the page follows the language button, errors included; after each action a
// confirmation is announced (#status, aria-live) and focus goes where the supervisor works next.
"use strict";

const POLL_MS = 2000;
const csrf = document.querySelector('meta[name="csrf-token"]').content;
let lang = localStorage.getItem("cg-lang") || "zh";
let last = null;
let shown = { message: null, status: null };  // {en, zh} on screen, redrawn when the language changes
let acting = false;  // an action of this page is under way: it moves focus itself when done
let fresh = null;    // timer: how long a confirmation stays in view while the page scrolls
const FRESH_MS = 8000;
const drawn = { open: "", awaiting: "", today: "", events: "" };
const KIND_TEXT = { cash_withdrawal: ["cash withdrawal", "取现"], transfer_out: ["transfer out", "转出"] };
const VIA_TEXT = { button: ["panel button", "主管按钮"], console: ["console", "控制台"], cli: ["command line", "命令行"] };
const UNREACHABLE = { en: "Cannot reach the gateway; try again in a moment.", zh: "无法连接网关，请稍后重试。" };
// What a refusal means when the gateway gave no Chinese words for it.
const REFUSED_ZH = {
  400: "请求被拒绝，请检查填写的内容后重试。",
  403: "页面已过期，请刷新后重试。",
  404: "找不到该预警或业务，可能已被处理，页面已更新。",
  409: "该预警的状态已变化（可能已被他人处理），页面已更新。",
  413: "内容过长，请缩短备注后重试。",
  429: "操作过于频繁，请稍后再试。",
};

function t(en, zh) { return lang === "zh" ? zh : en; }
function tr(text) { return text ? t(text.en, text.zh) : ""; }

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

// An id for an element of one alert's card (alert ids come from the gateway; keep ids plain).
function idFor(...parts) { return parts.join("-").replace(/[^A-Za-z0-9_-]/g, "_"); }

function clock(epoch) {
  return new Date(epoch * 1000).toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB", { hour12: false });
}

// The notices (#message, #status) stay at the top of the screen while there is something to
// read, so a supervisor far down the page on a phone still sees what happened; the page keeps
// focused controls clear of them (scroll-padding), so nothing the keyboard reaches hides under them.
function notices() {
  const box = document.getElementById("notices");
  box.classList.toggle("pinned", Boolean(shown.message || (shown.status && fresh)));
  document.documentElement.style.scrollPaddingTop = box.classList.contains("pinned") ? `${box.offsetHeight + 8}px` : "";
}

function say(text) {  // an error or a refusal: role="alert"
  shown.message = text;
  const m = document.getElementById("message");
  m.textContent = tr(text);
  m.classList.toggle("hidden", !text);
  notices();
}

function confirmDone(text, pin = false) {  // what was just done: role="status", aria-live="polite"
  shown.status = text;
  document.getElementById("status").textContent = tr(text);
  if (pin) {  // a new confirmation: in view for a while, then it scrolls away with the page
    clearTimeout(fresh);
    fresh = setTimeout(() => { fresh = null; notices(); }, FRESH_MS);
  }
  notices();
}

class Refused extends Error {
  constructor(status, en, zh) { super(en); this.status = status; this.text = { en, zh }; }
}

async function post(path, body) {
  let res;
  try {
    res = await fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body || {}),
    });
  } catch (e) {
    throw new Refused(0, UNREACHABLE.en, UNREACHABLE.zh);  // the browser's own words ("Failed to fetch") are English
  }
  const data = await res.json().catch(() => ({}));
  if (res.status === 401) { location.reload(); }
  if (!res.ok) {
    throw new Refused(res.status, data.error || `The gateway refused (${res.status}).`,
      data.error_zh || REFUSED_ZH[res.status] || "网关未能完成操作，请稍后重试；如仍不行，请联系技术支持。");
  }
  return data;
}

function reasonsOf(a) { return a.reasons.map(r => r[lang]).join(t(", ", "，")); }
function levelOf(a) { return a.level_text[lang]; }
function viaOf(via) { return VIA_TEXT[via] ? t(...VIA_TEXT[via]) : via; }
// Who acknowledged: a staff number, or "supervisor" for the panel button (no name), said in the page's language.
function whoOf(by, via) { return by === "supervisor" && via === "button" ? t("supervisor", "主管") : by; }
function outcomeOf(code) { return (last.outcomes.find(o => o.code === code) || {})[lang] || code; }
function questionOf(q) { return q[lang] || q.en || q.zh; }

function card(a, awaiting) {
  const heading = idFor("alert", a.alert_id);
  const c = el("article", { class: `card ${a.level}${a.escalated ? " escalated" : ""}`, "aria-labelledby": heading,
    dataset: { alertId: a.alert_id } });
  c.append(el("h3", { id: heading, tabindex: "-1", dataset: { focus: "heading" } },
    `${t("Counter", "柜台")} ${a.counter} · ${levelOf(a)} · ${clock(a.raised_at)}`));
  c.append(el("p", { class: "reasons" }, reasonsOf(a)));
  c.append(el("p", { class: "quiet" }, `${a.amount.toLocaleString()} ${t("yuan", "元")} · ${a.teller_text[lang]}`));
  if (a.raised_by) c.append(el("p", { class: "raised-by" }, `${t("Raised by", "发起人")} ${a.raised_by}` + (a.raise_note ? ` · ${a.raise_note}` : "")));
  // The final verdict once the customer answered the caring questions (an amber they cleared reads "Proceed").
  if (a.after_answers) c.append(el("p", { class: `after-answers ${a.after_answers.level}` },
    `${t("After the caring questions", "关爱提问后")}: ${a.after_answers.text[lang]}`));
  if (a.escalated) c.append(el("p", { class: "error" }, t("Escalated to the centre: nobody acknowledged in time", "已上报中心：未及时响应")));
  if (!awaiting) {
    if (a.asked.length) {
      c.append(el("strong", {}, t("Ask the customer:", "关爱提问：")));
      c.append(el("ul", { class: "questions" }, ...a.asked.map(q => el("li", { class: "question", dataset: { key: q.key } }, questionOf(q)))));
    }
    // A screen reader listing the page's buttons hears which alert each one is for.
    const b = el("button", { class: "ack", type: "button", id: idFor("ack", a.alert_id), "aria-labelledby": `${idFor("ack", a.alert_id)} ${heading}`,
      dataset: { focus: "ack" } }, t("Acknowledge", "确认接手"));
    b.addEventListener("click", () => act(b, "/api/ack", { alert_id: a.alert_id }, () => acknowledged(a)));
    c.append(b);
    return c;
  }
  c.append(el("p", { class: "quiet" }, `${t("Acknowledged by", "接手人")} ${whoOf(a.ack_by, a.ack_via)} (${viaOf(a.ack_via)}) ${clock(a.ack_at)}`));
  const answers = answerForm(a);
  const outcomes = el("fieldset", { class: "outcomes", role: "radiogroup", "aria-required": "true" },
    el("legend", {}, t("Outcome (required)", "处理结果（必选）")),
    ...last.outcomes.map(o => el("label", { class: "choice" },
      el("input", { type: "radio", class: "outcome", name: idFor("outcome", a.alert_id), value: o.code,
        dataset: { focus: `outcome:${o.code}` } }), " ", o[lang])));
  // Which of the three levels handled it: chosen for the supervisor only where the facts say so
  // (answers from the caring questions at the counter: level 1; police called: level 3).
  const handled = el("fieldset", { class: "outcomes handled", role: "radiogroup", "aria-required": "true" },
    el("legend", {}, t("Handled at (required)", "处理层级（必选）")),
    ...last.handled_levels.map(h => el("label", { class: "choice" },
      el("input", { type: "radio", class: "handled", name: idFor("handled", a.alert_id), value: String(h.code),
        dataset: { focus: `handled:${h.code}` } }), " ", h[lang])));
  const pickLevel = (code) => handled.querySelectorAll("input.handled").forEach(r => { r.checked = r.value === String(code); });
  if (a.level_implied) pickLevel(a.level_implied);
  const noteId = idFor("note", a.alert_id);
  const note = el("textarea", { class: "note", id: noteId, maxlength: "2000", dataset: { focus: "note" } });
  const b = el("button", { class: "record", type: "button", id: idFor("record", a.alert_id),
    "aria-labelledby": `${idFor("record", a.alert_id)} ${heading}`, dataset: { focus: "record" } }, t("Record outcome", "登记结果"));
  b.addEventListener("click", () => {
    const picked = outcomes.querySelector("input.outcome:checked");
    if (!picked) {  // nothing is chosen for the supervisor: an outcome is the bank's record
      outcomes.setAttribute("aria-invalid", "true");
      say({ en: "Choose an outcome first, then record it.", zh: "请先选择处理结果，再登记。" });
      outcomes.querySelector("input.outcome").focus();
      return;
    }
    const level = handled.querySelector("input.handled:checked");
    if (!level) {  // the centre counts each level's alerts: no level is guessed for the supervisor
      handled.setAttribute("aria-invalid", "true");
      say({ en: "Choose who handled it (level 1, 2 or 3), then record it.", zh: "请先选择处理层级（一级、二级或三级），再登记。" });
      handled.querySelector("input.handled").focus();
      return;
    }
    act(b, "/api/outcome", { alert_id: a.alert_id, outcome: picked.value, note: note.value, answers: chosen(answers),
      handled_at: Number(level.value) }, () => recorded(a, picked.value));
  });
  outcomes.addEventListener("change", () => {
    if (outcomes.getAttribute("aria-invalid")) { outcomes.removeAttribute("aria-invalid"); say(null); }
    const picked = outcomes.querySelector("input.outcome:checked");
    if (picked && picked.value === "police_called") pickLevel(3);  // police called is level 3
  });
  handled.addEventListener("change", () => {
    if (handled.getAttribute("aria-invalid")) { handled.removeAttribute("aria-invalid"); say(null); }
  });
  // The answers so far, scored by the gateway as a teller terminal's would be: the final verdict,
  // and the lamp moves if it rose (a caller's script in the answers is red).
  const score = el("button", { class: "score-answers", type: "button", id: idFor("score", a.alert_id),
    "aria-labelledby": `${idFor("score", a.alert_id)} ${heading}`, dataset: { focus: "score" } },
    t("Score the answers", "按回答研判"));
  score.addEventListener("click", () => scoreAnswers(a, score, answers));
  answers.append(score);
  c.append(answers, outcomes, handled, el("label", { for: noteId, class: "note-label" }, t("Note (what happened)", "备注（处理经过）")), note, b);
  return c;
}

// The alert's caring questions, each with what the customer answered; "not asked" (the default)
// records nothing. The same questions the open card showed, each select named by its question.
function answerForm(a) {
  const box = el("fieldset", { class: "answers" }, el("legend", {}, t("Caring questions: the customer's answers", "关爱提问：客户回答")));
  for (const q of a.asked) {
    const id = idFor("answer", a.alert_id, q.key);
    const pick = el("select", { class: "answer", id, dataset: { key: q.key, focus: `answer:${q.key}` } },
      el("option", { value: "" }, t("not asked", "未问")),
      ...last.answer_words.map(w => el("option", { value: w.code }, w[lang])));
    box.append(el("div", { class: "asked" }, el("label", { for: id, class: "question" }, questionOf(q)), pick));
  }
  return box;
}

async function scoreAnswers(a, button, box) {
  const given = chosen(box);
  if (!Object.keys(given).length) {
    say({ en: "Choose what the customer answered first.", zh: "请先选择客户的回答。" });
    const first = box.querySelector("select.answer");
    if (first) first.focus();
    return;
  }
  button.disabled = true;
  acting = true;
  try {
    const r = await post("/api/answers", { alert_id: a.alert_id, answers: given });
    say(null);
    confirmDone({ en: `Counter ${a.counter}, final verdict: ${r.text.en}`, zh: `${a.counter}号柜台最终研判：${r.text.zh}` }, true);
    await refresh();
    const mine = cardOf("awaiting", a.alert_id);
    const again = mine && mine.querySelector("button.score-answers");
    (again || document.getElementById("status")).focus();
  } catch (e) {
    say(e instanceof Refused ? e.text : UNREACHABLE);
    button.disabled = false;
    button.focus();
  } finally {
    acting = false;
  }
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

// Where the supervisor works next: the next alert nobody has acknowledged, else the given place,
// else the confirmation itself.
function focusNext(exceptId, fallback) {
  const next = [...document.querySelectorAll("#open .card")].find(c => c.dataset.alertId !== exceptId);
  const target = (next && next.querySelector("button.ack")) || fallback
    || document.getElementById(shown.message ? "message" : "status");
  target.focus();
}

function cardOf(box, alertId) {
  return [...document.querySelectorAll(`#${box} .card`)].find(c => c.dataset.alertId === alertId);
}

function acknowledged(a) {
  confirmDone({
    en: `Acknowledged: counter ${a.counter}, ${a.level_text.en} alert. Record its outcome below when you are done.`,
    zh: `已接手：${a.counter}号柜台${a.level_text.zh}色预警。处理完毕后请在下方登记结果。`,
  }, true);
  const mine = cardOf("awaiting", a.alert_id);
  focusNext(a.alert_id, mine && mine.querySelector("h3"));
}

function recorded(a, outcome) {
  const o = last.outcomes.find(x => x.code === outcome) || { en: outcome, zh: outcome };
  confirmDone({ en: `Outcome recorded for counter ${a.counter}: ${o.en}.`, zh: `已登记${a.counter}号柜台预警的处理结果：${o.zh}。` }, true);
  const waiting = document.querySelector("#awaiting .card h3");
  focusNext(a.alert_id, waiting);
}

function raised(e, level) {
  const word = { red: ["red", "红"], amber: ["amber", "黄"] }[level] || [level, level];
  confirmDone({ en: `${word[0]} alert raised at counter ${e.counter}; the supervisor and the centre are told.`,
    zh: `已在${e.counter}号柜台发起${word[1]}色预警，已通知主管并上报中心。` }, true);
  document.getElementById("status").focus();
}

async function act(button, path, body, done) {
  button.disabled = true;
  acting = true;
  try {
    await post(path, body);
    say(null);
    await refresh();
    done();
  } catch (e) {
    say(e instanceof Refused ? e.text : UNREACHABLE);
    button.disabled = false;
    button.focus();
    // Gone or changed meanwhile (someone else acknowledged it): show the page as it is now; if the
    // button went with it, focus follows the alert instead of falling to the top of the page.
    if (e instanceof Refused && (e.status === 404 || e.status === 409)) {
      const card = button.closest(".card");
      await refresh();
      if (!button.isConnected) followMoved(card && card.dataset.alertId, false);
    }
  } finally {
    acting = false;
  }
}

function keep(container) {
  // Half-typed notes, chosen outcomes and answers survive a redraw.
  const kept = {};
  container.querySelectorAll(".card").forEach(c => {
    const note = c.querySelector(".note"), picked = c.querySelector("input.outcome:checked");
    const level = c.querySelector("input.handled:checked");
    if (note) kept[c.dataset.alertId] = { note: note.value, outcome: picked ? picked.value : "", answers: chosen(c),
      handled: level ? level.value : "" };
  });
  return kept;
}

function drawCards(id, alerts, awaiting) {
  const sig = lang + JSON.stringify(alerts.map(a => [a.alert_id, a.state, a.escalated]));
  if (drawn[id] === sig) return;
  drawn[id] = sig;
  const box = document.getElementById(id);
  const kept = keep(box);
  // A redraw must not throw a keyboard user back to the top: remember the control that has focus.
  const active = box.contains(document.activeElement) ? document.activeElement : null;
  const focus = active && active.dataset.focus ? [active.closest(".card").dataset.alertId, active.dataset.focus] : null;
  box.replaceChildren(...alerts.map(a => card(a, awaiting)));
  box.querySelectorAll(".card").forEach(c => {
    const k = kept[c.dataset.alertId];
    if (k) {
      c.querySelector(".note").value = k.note;
      c.querySelectorAll("input.outcome").forEach(r => { r.checked = r.value === k.outcome; });
      if (k.handled) c.querySelectorAll("input.handled").forEach(r => { r.checked = r.value === k.handled; });
      c.querySelectorAll("select.answer").forEach(s => { s.value = k.answers[s.dataset.key] || ""; });
    }
    if (focus && c.dataset.alertId === focus[0]) {
      const again = [...c.querySelectorAll("[data-focus]")].find(n => n.dataset.focus === focus[1]);
      if (again) again.focus();
    }
  });
}

function cell(label, ...children) { return el("td", { "data-label": label }, ...children); }

function drawToday(alerts) {
  const sig = lang + JSON.stringify(alerts.map(a => [a.alert_id, a.state]));
  if (drawn.today === sig) return;
  drawn.today = sig;
  const rows = alerts.map(a => el("tr", { dataset: { alertId: a.alert_id } },
    cell(t("Raised", "时间"), clock(a.raised_at)), cell(t("Counter", "柜台"), a.counter), cell(t("Level", "级别"), levelOf(a)),
    cell(t("Reasons", "原因"), reasonsOf(a)),
    cell(t("Acknowledged", "响应"), a.ack_by ? `${whoOf(a.ack_by, a.ack_via)} · ${a.response_s} ${t("s", "秒")}` : t("waiting", "等待中")),
    cell(t("Outcome", "结果"), a.outcome ? a.outcome_text[lang] + (a.handled_text ? ` · ${a.handled_text[lang]}` : "")
      + (a.note ? ` · ${a.note}` : "") : "",
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
  // A keyboard user on a Report button keeps their place when the list moves on.
  const active = box.contains(document.activeElement) ? document.activeElement : null;
  const focus = active && active.closest("tr") ? [active.closest("tr").dataset.eventId, active.className] : null;
  box.replaceChildren(...events.map(e => {
    const kind = KIND_TEXT[e.kind] ? t(...KIND_TEXT[e.kind]) : e.kind;
    const report = el("td", { class: "report", "data-label": t("Report", "发起预警") });
    if (e.open_alerts.includes("red")) {
      report.append(el("span", { class: "quiet" }, t("red alert open", "红色预警处理中")));
    } else {
      const where = `${t("counter", "柜台")} ${e.counter} ${clock(e.received_wall)}`;
      const level = el("select", { class: "raise-level", "aria-label": `${t("Level", "级别")} (${where})` },
        el("option", { value: "red" }, t("red: hold, call the supervisor", "红：暂停业务，通知主管")),
        ...(e.open_alerts.includes("amber") ? [] : [el("option", { value: "amber" }, t("amber: ask the caring questions", "黄：关爱提问"))]));
      const note = el("textarea", { class: "raise-note", maxlength: String(last.raise_note_max),
        "aria-label": `${t("What did you notice?", "您注意到了什么？")} (${where})`,
        placeholder: t("What did you notice?", "您注意到了什么？") });
      const b = el("button", { class: "raise", type: "button" }, t("Report", "发起预警"));
      b.addEventListener("click", () => act(b, "/api/raise", { event_id: e.event_id, level: level.value, note: note.value },
        () => raised(e, level.value)));
      report.append(level, note, b);
    }
    return el("tr", { class: e.level, dataset: { eventId: e.event_id } },
      cell(t("Time", "时间"), clock(e.received_wall)), cell(t("Counter", "柜台"), e.counter),
      cell(t("Amount", "金额"), `${e.amount.toLocaleString()} ${t("yuan", "元")}`),
      cell(t("Kind", "业务"), kind), el("td", { class: "verdict", "data-label": t("Verdict", "结果") }, e.level_text[lang]), report);
  }));
  if (focus) {
    const row = [...box.querySelectorAll("tr")].find(r => r.dataset.eventId === focus[0]);
    const again = row && [...row.querySelectorAll("button, select, textarea")].find(n => n.className === focus[1]);
    if (again) again.focus();
  }
}

// The alert a focused control belonged to left its list (acknowledged or closed by someone
// else, or by this page): focus goes where focusNext puts it, and, when it was someone else,
// the supervisor is told why.
function followMoved(alertId, tell) {
  const waiting = cardOf("awaiting", alertId);
  const a = last && [...last.awaiting_outcome, ...last.today].find(x => x.alert_id === alertId);
  if (tell && a && waiting) {
    const who = { en: a.ack_via === "button" ? "the panel button" : a.ack_by, zh: a.ack_via === "button" ? "主管按钮" : ` ${a.ack_by} ` };
    confirmDone({ en: `Counter ${a.counter}'s alert was acknowledged by ${who.en}. Record its outcome below.`,
      zh: `${a.counter}号柜台的预警已由${who.zh}接手，请在下方登记结果。` }, true);
  } else if (tell && a && a.outcome) {
    confirmDone({ en: `Counter ${a.counter}'s alert was closed by ${a.outcome_by}: ${a.outcome_text.en}.`,
      zh: `${a.counter}号柜台的预警已由 ${a.outcome_by} 登记结果：${a.outcome_text.zh}。` }, true);
  }
  focusNext(alertId, waiting && waiting.querySelector("h3"));
}

function draw() {
  if (!last) return;
  const before = document.activeElement;
  const card = before && before.closest(".cards .card");
  drawCards("open", last.open, false);
  drawCards("awaiting", last.awaiting_outcome, true);
  // Focus fell to the page itself (its control was taken away with the card): put it back.
  if (card && !before.isConnected && !acting && (!document.activeElement || document.activeElement === document.body)) {
    followMoved(card.dataset.alertId, true);
  }
  document.getElementById("no-open").classList.toggle("hidden", last.open.length > 0);
  drawToday(last.today);
  drawEvents(last.events);
  const n = last.open.length;
  document.title = `${n ? `(${n}) ` : ""}${t("Counter alerts", "柜面预警")} — counterguard`;
}

function relabel() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-en]").forEach(n => { n.textContent = n.dataset[lang]; });
  const button = document.getElementById("lang");
  button.textContent = lang === "zh" ? "English" : "中文";
  button.lang = lang === "zh" ? "en" : "zh-CN";
  say(shown.message);
  confirmDone(shown.status);
}

async function refresh() {
  try {
    const res = await fetch("/api/state", { credentials: "same-origin", cache: "no-store" });
    if (res.status === 401) { location.reload(); return; }
    if (!res.ok) throw new Error(String(res.status));
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
  try { await post("/logout"); } catch (e) { /* logged out or gone: the reload shows which */ } finally { location.reload(); }
});

relabel();
refresh();
setInterval(refresh, POLL_MS);
