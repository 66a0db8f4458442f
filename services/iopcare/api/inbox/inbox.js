// The counselor inbox: a small page over the /v1 API, no framework, no build step.
//
// Why it is written this way:
// - The bearer token lives in sessionStorage (this tab only), never in a URL, a cookie or a log;
//   "Sign out" forgets it, and a 401 from the API (revoked, expired) signs the tab out.
// - Every value from the API is written with textContent / text nodes, never innerHTML, so nothing in
//   an alert (a title, a fact, an event id) can add markup or script. The page's CSP forbids inline
//   script as a second line of defence.
// - Live updates are polling of /v1/alerts (no server push needed). Cards are kept by alert id and
//   updated in place, so an open detail or a half-typed snooze reason survives a refresh.
// - Each list request is audited by the API (one row per patient shown), so polls send the page's
//   ETag (an unchanged page is a 304: one audit row, no data) and polling pauses while the tab is hidden.
"use strict";

(() => {
  const TOKEN_KEY = "iopcare.inbox.token";
  const POLL_MS = Math.max(1, Number(document.body.dataset.pollSeconds) || 5) * 1000;
  const SEVERITY_RANK = { critical: 0, high: 1, medium: 2, low: 3, info: 4 };
  const STATE_RANK = { open: 0, snoozed: 1, acknowledged: 2, resolved: 3 };
  const SEVERITY_LABEL = { critical: "Critical", high: "High", medium: "Medium", low: "Low", info: "Info" };
  const STATE_LABEL = { open: "Open", acknowledged: "Acknowledged", snoozed: "Snoozed", resolved: "Resolved" };
  const ALERT_HASH = /^#alert-([0-9a-fA-F-]{36})$/;
  // What the counselor did, recorded with the acknowledgement (iopcare evaluate --database reads it).
  const OUTCOMES = [
    ["", "Not said"],
    ["contacted_patient", "Contacted the patient"],
    ["changed_plan", "Changed the plan"],
    ["no_action_needed", "No action needed"],
    ["false_alarm", "False alarm"],
  ];
  const RULE_LABEL = (rule) => rule.replaceAll("_", " ");

  const $ = (id) => document.getElementById(id);

  const session = {
    token: null,
    me: null,
    known: null, // alert ids seen since sign-in; null until the first list has loaded
    cards: new Map(), // alert id -> card
    groups: new Map(), // patient id -> group
    linked: null, // the card of an alert opened by #alert-<id> that is not in the list
    timer: null,
    inflight: null,
    digest: null, // the latest unacknowledged daily digest shown, if any
  };

  // --- DOM helpers: text only ---------------------------------------------------------------------

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "hidden") node.hidden = true;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child)); // strings become text nodes
    }
    return node;
  }

  function when(iso) {
    if (!iso) return el("span", {}, "—");
    const date = new Date(iso);
    const shown = date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    return el("time", { datetime: iso, title: iso }, shown);
  }

  function byTime(iso) {
    return iso ? Date.parse(iso) : 0;
  }

  function showProblem(node, text) {
    node.textContent = text;
    node.hidden = !text;
  }

  // --- the API --------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, detail, requestId) {
      super(detail);
      this.status = status;
      this.code = code;
      this.detail = detail;
      this.requestId = requestId;
    }

    describe() {
      const where = this.requestId ? `; request ${this.requestId}` : "";
      return `${this.detail} (${this.code}${where})`;
    }
  }

  // Pages of /v1/alerts already held, by request path: their ETag and body. An unchanged page comes
  // back as 304 with no patient data, which the API audits as one "unchanged" row, not a row per patient.
  const heldPages = new Map();

  async function api(method, path, body) {
    const token = session.token;
    const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
    const held = method === "GET" ? heldPages.get(path) : undefined;
    if (held) headers["If-None-Match"] = held.etag;
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ApiError(0, "unreachable", "the server did not answer", null);
    }
    if (response.status === 304 && held) return held.body;
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    const etag = response.headers.get("ETag");
    if (response.ok && method === "GET" && etag) heldPages.set(path, { etag, body: data });
    if (!response.ok) {
      const problem = data && typeof data === "object" ? data : {};
      const error = new ApiError(
        response.status,
        String(problem.error || `http_${response.status}`),
        String(problem.detail || response.statusText || "the request failed"),
        problem.request_id || response.headers.get("X-Request-Id"),
      );
      if (response.status === 401 && token === session.token) {
        signOut("The server no longer accepts this token (revoked or expired). Sign in again.");
      }
      throw error;
    }
    return data;
  }

  async function fetchAlerts() {
    const alerts = [];
    let cursor = null;
    for (let page = 0; page < 10; page += 1) {
      const query = new URLSearchParams({ limit: "200" });
      if (cursor) query.set("cursor", cursor);
      const body = await api("GET", `/v1/alerts?${query}`);
      alerts.push(...body.alerts);
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    return alerts;
  }

  // --- signing in and out ---------------------------------------------------------------------------

  async function signIn(token) {
    session.token = token;
    showProblem($("login-error"), "");
    let me;
    try {
      me = await api("GET", "/v1/me");
    } catch (error) {
      forget();
      showLogin(`Sign-in failed: ${error.describe()}`);
      return;
    }
    if (me.role !== "counselor" && me.role !== "supervisor") {
      forget();
      showLogin(`A ${me.role} token cannot open the inbox; use a counselor or supervisor token.`);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    session.me = me;
    $("who").textContent = `Signed in as ${me.subject} (${me.role})`;
    $("login").hidden = true;
    $("session").hidden = false;
    $("inbox").hidden = false;
    $("inbox-title").textContent = me.role === "supervisor" ? "Unresolved alerts of my team" : "Unresolved alerts";
    await refresh();
    await followHash();
  }

  function forget() {
    clearTimeout(session.timer);
    sessionStorage.removeItem(TOKEN_KEY);
    Object.assign(session, { token: null, me: null, known: null, linked: null, timer: null });
    session.cards.clear();
    session.groups.clear();
    heldPages.clear();
    $("patients").replaceChildren();
    $("linked").replaceChildren();
    $("linked").hidden = true;
    $("digest").hidden = true;
    session.digest = null;
    $("who").textContent = "";
    document.title = "iopcare · counselor inbox";
  }

  function showLogin(message) {
    $("inbox").hidden = true;
    $("session").hidden = true;
    $("login").hidden = false;
    showProblem($("login-error"), message || "");
    $("token").focus();
  }

  function signOut(message) {
    forget();
    showLogin(message);
  }

  // --- the list ---------------------------------------------------------------------------------------

  function refresh() {
    if (!session.inflight) {
      session.inflight = load().finally(() => {
        session.inflight = null;
      });
    }
    return session.inflight;
  }

  async function load() {
    const token = session.token;
    if (!token) return;
    clearTimeout(session.timer);
    const asked = performance.now();
    try {
      const alerts = await fetchAlerts();
      const digests = await api("GET", "/v1/digests?limit=1");
      if (token !== session.token) return; // signed out meanwhile
      render(alerts, asked);
      renderDigest(digests.digests[0]);
      showProblem($("inbox-error"), "");
      $("status").textContent = `Updated ${new Date().toLocaleTimeString()} · refreshes every ${POLL_MS / 1000} s`;
    } catch (error) {
      if (token !== session.token) return;
      showProblem($("inbox-error"), `Could not refresh the inbox: ${error.describe()}. Retrying.`);
    } finally {
      if (token === session.token && !document.hidden) {
        session.timer = setTimeout(refresh, POLL_MS);
      }
    }
  }

  function compareAlerts(a, b) {
    return (
      (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9) ||
      (STATE_RANK[a.state] ?? 9) - (STATE_RANK[b.state] ?? 9) ||
      byTime(b.raised_at) - byTime(a.raised_at)
    );
  }

  function placeAt(parent, node, index) {
    if (parent.children[index] !== node) parent.insertBefore(node, parent.children[index] || null);
  }

  function render(alerts, asked) {
    const firstLoad = session.known === null;
    if (firstLoad) session.known = new Set();
    const fresh = [];
    const byPatient = new Map();
    for (const alert of alerts) {
      if (!byPatient.has(alert.patient_id)) byPatient.set(alert.patient_id, []);
      byPatient.get(alert.patient_id).push(alert);
      if (!session.known.has(alert.alert_id)) {
        session.known.add(alert.alert_id);
        if (!firstLoad) fresh.push(alert.alert_id);
      }
    }
    // Patients in the order of their most pressing alert; each patient's alerts most severe first.
    const patients = [...byPatient.entries()]
      .map(([patientId, list]) => [patientId, list.sort(compareAlerts)])
      .sort(([, a], [, b]) => compareAlerts(a[0], b[0]));

    const shownAlerts = new Set();
    const container = $("patients");
    patients.forEach(([patientId, list], groupIndex) => {
      let group = session.groups.get(patientId);
      if (!group) {
        group = makeGroup(patientId);
        session.groups.set(patientId, group);
      }
      updateGroup(group, list);
      list.forEach((alert, index) => {
        let card = session.cards.get(alert.alert_id);
        if (!card) {
          card = makeCard(alert);
          session.cards.set(alert.alert_id, card);
        }
        // A list asked for before the counselor's last action on this card is older than the card.
        if (!(card.actedAt > asked)) updateCard(card, alert);
        placeAt(group.list, card.root, index);
        shownAlerts.add(alert.alert_id);
      });
      placeAt(container, group.root, groupIndex);
    });
    for (const [alertId, card] of session.cards) {
      if (!shownAlerts.has(alertId)) {
        card.root.remove();
        session.cards.delete(alertId);
      }
    }
    for (const [patientId, group] of session.groups) {
      if (!byPatient.has(patientId)) {
        group.root.remove();
        session.groups.delete(patientId);
      }
    }
    for (const alertId of fresh) markNew(session.cards.get(alertId), true);
    if (fresh.length) {
      $("announce").textContent = `${fresh.length} new alert${fresh.length > 1 ? "s" : ""}`;
    }
    const newCount = [...session.cards.values()].filter((card) => card.isNew).length;
    document.title = `${newCount ? `(${newCount}) ` : ""}iopcare · counselor inbox`;
    $("empty").hidden = alerts.length > 0;
  }

  function makeGroup(patientId) {
    const heading = el("h3", {}, `Patient ${patientId}`);
    const counts = el("p", { class: "group-counts" });
    const list = el("div", { class: "alerts" });
    const root = el("section", { class: "patient", "data-patient-id": patientId }, heading, counts, list);
    return { root, counts, list };
  }

  function recount(patientId) {
    const group = session.groups.get(patientId);
    const cards = [...session.cards.values()].filter((card) => card.alert.patient_id === patientId);
    if (group && cards.length) updateGroup(group, cards.map((card) => card.alert));
  }

  function updateGroup(group, list) {
    const open = list.filter((alert) => alert.state === "open").length;
    const risk = list.find((alert) => alert.risk_score !== null && alert.risk_score !== undefined);
    const parts = [`${list.length} unresolved alert${list.length > 1 ? "s" : ""}`, `${open} open`];
    if (risk) parts.push(`risk score ${risk.risk_score}/100`);
    group.counts.textContent = parts.join(" · ");
  }

  // --- one alert --------------------------------------------------------------------------------------

  function makeCard(alert) {
    const id = alert.alert_id;
    const card = { id, alert, isNew: false, expanded: false };
    card.severity = el("span", { class: "badge severity" });
    card.state = el("span", { class: "badge state" });
    card.escalated = el("span", { class: "badge escalated", hidden: true }, "Escalated");
    card.newBadge = el("span", { class: "badge new", hidden: true }, "New");
    card.title = el("h4", { class: "title" });
    card.explanation = el("p", { class: "explanation" });
    card.recommended = el("p", { class: "recommended" });
    card.facts = el("dl", { class: "summary" });
    card.problem = el("p", { class: "problem", role: "alert", hidden: true });
    card.detail = el("div", { class: "detail", id: `detail-${id}`, hidden: true });
    card.toggle = el("button", { type: "button", class: "toggle", "aria-expanded": "false", "aria-controls": card.detail.id }, "Show details");
    card.toggle.addEventListener("click", () => (card.expanded ? collapse(card) : expand(card)));

    card.outcome = el("select", {}, ...OUTCOMES.map(([value, label]) => el("option", { value }, label)));
    card.outcomeChoice = el("label", { class: "outcome-choice" }, "What did you do?", card.outcome);
    card.acknowledge = el("button", { type: "button", class: "acknowledge" }, "Acknowledge");
    card.acknowledge.addEventListener("click", () =>
      act(card, "acknowledge", card.outcome.value ? { outcome: card.outcome.value } : {}),
    );
    card.snoozeOpen = el("button", { type: "button", "aria-expanded": "false" }, "Snooze…");
    card.resolveOpen = el("button", { type: "button", "aria-expanded": "false" }, "Resolve…");
    card.snoozeForm = snoozeForm(card);
    card.resolveForm = resolveForm(card);
    card.snoozeOpen.addEventListener("click", () => openForm(card, card.snoozeForm, card.snoozeOpen));
    card.resolveOpen.addEventListener("click", () => openForm(card, card.resolveForm, card.resolveOpen));
    const actions = el("div", { class: "actions" }, card.outcomeChoice, card.acknowledge, card.snoozeOpen, card.resolveOpen, card.toggle);

    card.root = el(
      "article",
      { class: "alert", id: `alert-${id}`, "data-alert-id": id },
      el("div", { class: "alert-head" }, card.severity, card.state, card.escalated, card.newBadge, card.title),
      card.explanation,
      card.recommended,
      card.facts,
      actions,
      card.snoozeForm,
      card.resolveForm,
      card.problem,
      card.detail,
    );
    return card;
  }

  function updateCard(card, alert) {
    const changed = card.alert.last_seen_at !== alert.last_seen_at || card.alert.state !== alert.state;
    card.alert = alert;
    card.root.dataset.severity = alert.severity;
    card.root.dataset.state = alert.state;
    card.severity.textContent = SEVERITY_LABEL[alert.severity] || alert.severity;
    card.severity.dataset.severity = alert.severity;
    card.state.textContent = STATE_LABEL[alert.state] || alert.state;
    card.state.dataset.state = alert.state;
    card.escalated.hidden = !alert.escalated;
    card.title.textContent = alert.title;
    card.explanation.textContent = alert.explanation;
    card.recommended.replaceChildren(el("strong", {}, "Recommended: "), alert.recommended_action);
    const rows = [
      ["Occurrences", String(alert.occurrences)],
      ["Raised", when(alert.raised_at)],
      ["Escalated", alert.escalated ? "Yes, to the supervisor" : "No"],
      ["Risk score", alert.risk_score === null || alert.risk_score === undefined ? "—" : `${alert.risk_score}/100`],
    ];
    if (alert.state === "snoozed") rows.push(["Snoozed until", when(alert.snoozed_until)]);
    if (alert.inhibited_by) rows.push(["Held back by", alert.inhibited_by]);
    card.facts.replaceChildren(...rows.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]));
    card.acknowledge.hidden = alert.state === "acknowledged" || alert.state === "resolved";
    card.outcomeChoice.hidden = card.acknowledge.hidden;
    // Every button says which alert it acts on (a screen reader lists them out of context).
    const about = `${alert.title} (patient ${alert.patient_id})`;
    card.acknowledge.setAttribute("aria-label", `Acknowledge: ${about}`);
    card.snoozeOpen.setAttribute("aria-label", `Snooze…: ${about}`);
    card.resolveOpen.setAttribute("aria-label", `Resolve…: ${about}`);
    card.snoozeOpen.hidden = alert.state === "resolved";
    card.resolveOpen.hidden = alert.state === "resolved";
    if (changed && card.expanded) loadDetail(card);
  }

  function markNew(card, isNew) {
    if (!card) return;
    card.isNew = isNew;
    card.newBadge.hidden = !isNew;
    card.root.classList.toggle("is-new", isNew);
  }

  function expand(card) {
    card.expanded = true;
    markNew(card, false);
    card.detail.hidden = false;
    card.toggle.setAttribute("aria-expanded", "true");
    card.toggle.textContent = "Hide details";
    return loadDetail(card);
  }

  function collapse(card) {
    card.expanded = false;
    card.detail.hidden = true;
    card.toggle.setAttribute("aria-expanded", "false");
    card.toggle.textContent = "Show details";
  }

  async function loadDetail(card) {
    if (!card.detail.childElementCount) card.detail.replaceChildren(el("p", {}, "Loading…"));
    try {
      const detail = await api("GET", `/v1/alerts/${encodeURIComponent(card.id)}`);
      card.detail.replaceChildren(...renderDetail(detail));
    } catch (error) {
      card.detail.replaceChildren(el("p", { class: "problem", role: "alert" }, `Could not load the details: ${error.describe()}`));
    }
  }

  function table(caption, headings, rows) {
    return el(
      "table",
      {},
      el("caption", {}, caption),
      el("thead", {}, el("tr", {}, ...headings.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c))))),
    );
  }

  function plain(value) {
    if (value === null || value === undefined) return "—";
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  function renderDetail(detail) {
    const parts = [];
    const facts = Object.entries(detail.evidence.facts || {});
    parts.push(table("Evidence", ["Fact", "Value"], facts.map(([name, value]) => [name, plain(value)])));
    parts.push(
      el("p", { class: "event-ids" }, "Evidence events: ", ...detail.evidence.event_ids.flatMap((id, i) => [i ? ", " : "", el("code", {}, id)])),
    );
    if (detail.risk) {
      const risk = detail.risk;
      const sign = risk.trend_change > 0 ? "+" : "";
      parts.push(
        el("h5", {}, `Risk score ${risk.score}/100, ${risk.trend_direction} (${sign}${risk.trend_change} over ${risk.trend_days} days)`),
        el("ul", { class: "risk" }, ...risk.factors.map((f) => el("li", {}, `${f.name} (+${f.points}): ${f.reason}`))),
      );
    }
    parts.push(
      table(
        "History",
        ["When", "Change", "By", "From → to", "Reason"],
        detail.transitions.map((t) => [when(t.at), t.kind, t.actor, `${t.from_state || "—"} → ${t.to_state}`, t.reason || "—"]),
      ),
    );
    parts.push(
      table(
        "Recent events",
        ["When", "Event", "Id", "Details"],
        detail.timeline.map((event) => [
          when(event.time),
          event.type,
          el("code", {}, event.event_id),
          Object.entries(event.data || {})
            .map(([name, value]) => `${name}: ${plain(value)}`)
            .join("; "),
        ]),
      ),
    );
    return parts;
  }

  // --- counselor actions ------------------------------------------------------------------------------

  let formCount = 0;

  function field(label, input) {
    formCount += 1;
    input.id = `field-${formCount}`;
    return el("p", { class: "field" }, el("label", { for: input.id }, label), input);
  }

  function snoozeForm(card) {
    const until = el("input", { type: "datetime-local", required: true, name: "until" });
    const reason = el("input", { type: "text", required: true, maxlength: 500, name: "reason", autocomplete: "off" });
    const form = el(
      "form",
      { class: "action-form snooze", hidden: true },
      el("fieldset", {}, el("legend", {}, "Snooze this alert"), field("Until", until), field("Reason", reason),
        el("button", { type: "submit" }, "Snooze alert"), cancelButton(card)),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const at = new Date(until.value);
      if (Number.isNaN(at.getTime())) {
        showProblem(card.problem, "Choose the date and time the alert should come back.");
        return;
      }
      act(card, "snooze", { until: at.toISOString(), reason: reason.value });
    });
    form.resetTo = () => {
      const later = new Date(Date.now() + 2 * 3600 * 1000 - new Date().getTimezoneOffset() * 60000);
      until.value = later.toISOString().slice(0, 16); // local time, as datetime-local wants it
      reason.value = "";
      return until;
    };
    return form;
  }

  function resolveForm(card) {
    const reason = el("input", { type: "text", required: true, maxlength: 500, name: "reason", autocomplete: "off" });
    const form = el(
      "form",
      { class: "action-form resolve", hidden: true },
      el("fieldset", {}, el("legend", {}, "Resolve this alert"), field("Reason", reason),
        el("button", { type: "submit" }, "Resolve alert"), cancelButton(card)),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      act(card, "resolve", { reason: reason.value });
    });
    form.resetTo = () => {
      reason.value = "";
      return reason;
    };
    return form;
  }

  function cancelButton(card) {
    const button = el("button", { type: "button", class: "secondary" }, "Cancel");
    button.addEventListener("click", () => closeForms(card));
    return button;
  }

  function openForm(card, form, opener) {
    closeForms(card);
    form.hidden = false;
    opener.setAttribute("aria-expanded", "true");
    form.resetTo().focus();
  }

  function closeForms(card) {
    card.snoozeForm.hidden = true;
    card.resolveForm.hidden = true;
    card.snoozeOpen.setAttribute("aria-expanded", "false");
    card.resolveOpen.setAttribute("aria-expanded", "false");
  }

  const DONE = { acknowledge: "acknowledged", snooze: "snoozed", resolve: "resolved" };

  async function act(card, verb, body) {
    showProblem(card.problem, "");
    const buttons = card.root.querySelectorAll("button");
    buttons.forEach((button) => (button.disabled = true));
    try {
      const summary = await api("POST", `/v1/alerts/${encodeURIComponent(card.id)}/${verb}`, body);
      card.actedAt = performance.now();
      markNew(card, false);
      closeForms(card);
      updateCard(card, summary);
      recount(summary.patient_id);
      $("announce").textContent = `Alert ${DONE[verb]}`;
      if (card.expanded) await loadDetail(card);
      refresh();
    } catch (error) {
      if (session.token) showProblem(card.problem, `Could not ${verb} the alert: ${error.describe()}`);
    } finally {
      buttons.forEach((button) => (button.disabled = false));
    }
  }

  // --- the daily digest ----------------------------------------------------------------------------

  function renderDigest(digest) {
    const section = $("digest");
    const show = Boolean(digest && !digest.acknowledged_at);
    section.hidden = !show;
    session.digest = show ? digest : null;
    if (!show) return;
    section.dataset.digestId = digest.digest_id;
    $("digest-title").textContent = digest.headline;
    section.querySelector(".digest-parts").textContent = Object.entries(digest.by_rule)
      .map(([rule, n]) => `${RULE_LABEL(rule)} ${n}`)
      .join(" · ");
    section.querySelector(".digest-items").replaceChildren(
      ...digest.items.map((item) => el("li", {}, `Patient ${item.patient_id}: ${item.title}`)),
    );
  }

  async function acknowledgeDigest() {
    const digest = session.digest;
    if (!digest) return;
    const button = $("digest-acknowledge");
    showProblem($("digest-error"), "");
    button.disabled = true;
    try {
      const done = await api("POST", `/v1/digests/${encodeURIComponent(digest.digest_id)}/acknowledge`, {});
      renderDigest(done);
      $("announce").textContent = "Daily summary acknowledged";
      refresh();
    } catch (error) {
      if (session.token) showProblem($("digest-error"), `Could not acknowledge the summary: ${error.describe()}`);
    } finally {
      button.disabled = false;
    }
  }

  // --- links to one alert (#alert-<id>, as webhook payloads carry) -----------------------------------

  async function followHash() {
    const match = ALERT_HASH.exec(location.hash);
    const linked = $("linked");
    if (!match || !session.token) {
      linked.hidden = true;
      linked.replaceChildren();
      session.linked = null;
      return;
    }
    const id = match[1].toLowerCase();
    const card = session.cards.get(id);
    if (card) {
      linked.hidden = true;
      linked.replaceChildren();
      await expand(card);
      card.root.scrollIntoView({ block: "start" });
      card.toggle.focus();
      return;
    }
    // Not among the unresolved alerts (resolved since, say): show it on its own above the list.
    linked.hidden = false;
    try {
      const detail = await api("GET", `/v1/alerts/${encodeURIComponent(id)}`);
      const own = makeCard(detail.alert);
      own.root.id = `linked-alert-${id}`;
      updateCard(own, detail.alert);
      session.linked = own;
      linked.replaceChildren(el("h3", {}, "Linked alert (not in the list below)"), own.root);
      await expand(own);
      own.root.scrollIntoView({ block: "start" });
    } catch (error) {
      linked.replaceChildren(el("p", { class: "problem", role: "alert" }, `Linked alert: ${error.describe()}`));
    }
  }

  // --- start ------------------------------------------------------------------------------------------

  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("token");
    const token = input.value.trim();
    input.value = "";
    if (token) signIn(token);
  });
  $("sign-out").addEventListener("click", () => signOut("Signed out."));
  $("digest-acknowledge").addEventListener("click", acknowledgeDigest);
  window.addEventListener("hashchange", followHash);
  document.addEventListener("visibilitychange", () => {
    if (!session.token) return;
    if (document.hidden) clearTimeout(session.timer);
    else refresh();
  });

  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
  else showLogin("");
})();
