// The pushi dashboard: plain JavaScript over the admin API (/admin/api). No framework, no
// build step: the server embeds this file as it is.
//
// Credentials live in sessionStorage (this tab only) and travel in the Authorization header:
// "Bearer <admin token>" or "Basic base64(key:secret)". Every text from the server is put on
// the page with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_CONSOLE_ROWS = 1000;

const state = {
  creds: null, // {kind: "admin", token} or {kind: "app", key, secret}
  role: null, // the server's answer: {role, app_id}
  apps: [],
  appId: null,
  tab: "apps",
  stream: null, // AbortController of the open event stream
  paused: false,
  consoleEvents: [],
  outboxTimer: null,
};

// --- talking to the server -------------------------------------------------------------

function authorization(creds) {
  if (creds.kind === "admin") return `Bearer ${creds.token}`;
  const bytes = new TextEncoder().encode(`${creds.key}:${creds.secret}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body, creds = state.creds) {
  const headers = { Authorization: authorization(creds) };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`/admin/api${path}`, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text };
  }
  if (!response.ok) {
    if (response.status === 401 && creds === state.creds) signOut("Signed out: " + (data?.message ?? ""));
    throw new ApiError(response.status, data?.message ?? `HTTP ${response.status}`);
  }
  return data;
}

const appPath = (suffix = "") => `/apps/${encodeURIComponent(state.appId)}${suffix}`;

// --- small DOM helpers -------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function fill(tbody, rows, empty) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 9, class: "empty" }, empty))]));
}

function say(node, text, isError = false) {
  node.textContent = text;
  node.classList.toggle("error", isError);
}

const time = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false }) + "." + String(ms % 1000).padStart(3, "0");

// --- signing in and out --------------------------------------------------------------------

async function signIn(creds) {
  const role = await api("GET", "/session", undefined, creds);
  state.creds = creds;
  state.role = role;
  sessionStorage.setItem("pushi-dashboard", JSON.stringify(creds));
  $("sign-in").hidden = true;
  $("tabs").hidden = false;
  $("sign-out").hidden = false;
  $("app-picker").hidden = false;
  $("create-form").hidden = role.role !== "admin";
  $("who").textContent = role.role === "admin" ? "operator" : `app ${role.app_id}`;
  await loadApps(role.app_id ?? null);
  showTab(state.tab);
}

function signOut(message = "") {
  stopStream();
  stopOutbox();
  sessionStorage.removeItem("pushi-dashboard");
  Object.assign(state, { creds: null, role: null, apps: [], appId: null, consoleEvents: [] });
  for (const page of document.querySelectorAll(".page")) page.hidden = true;
  $("sign-in").hidden = false;
  $("tabs").hidden = true;
  $("sign-out").hidden = true;
  $("app-picker").hidden = true;
  $("who").textContent = "";
  say($("sign-in-error"), message, Boolean(message));
}

// --- apps ----------------------------------------------------------------------------------

async function loadApps(select) {
  const { apps } = await api("GET", "/apps");
  state.apps = apps;
  const keep = select ?? state.appId ?? apps[0]?.id ?? null;
  $("app-select").replaceChildren(...apps.map((a) => el("option", { value: a.id, selected: a.id === keep }, `${a.id} · ${a.name}`)));
  renderAppsTable();
  if (keep !== state.appId) selectApp(keep);
  else renderDetail();
}

function currentApp() {
  return state.apps.find((a) => a.id === state.appId) ?? null;
}

function selectApp(id) {
  state.appId = id;
  $("app-select").value = id ?? "";
  state.consoleEvents = [];
  renderConsole();
  renderAppsTable();
  renderDetail();
  startStream();
  if (state.tab === "outbox") startOutbox();
}

function renderAppsTable() {
  const rows = state.apps.map((a) =>
    el(
      "tr",
      { class: a.id === state.appId ? "selected" : "", onclick: () => selectApp(a.id), "data-app": a.id },
      el("td", {}, a.id),
      el("td", {}, a.name),
      el("td", {}, a.enabled ? "yes" : "no"),
      el("td", {}, a.connections),
      el("td", {}, el("code", {}, a.key)),
    ),
  );
  fill($("apps-table").tBodies[0], rows, "no apps");
}

// Every editable field of an app: where it comes from, and how it is edited.
const FIELDS = [
  ["General", [
    ["name", "text", "Name"],
    ["description", "textarea", "Description"],
    ["enabled", "bool", "Enabled (disabled apps refuse connections and API calls)"],
  ]],
  ["Client events", [
    ["client_events", "bool", "Allow client-* events from sockets"],
    ["client_event_rate", "uint", "Client events per second per connection"],
    ["public_client_events", "bool", "Pushi sockets may publish to public channels"],
    ["persist_client_events", "bool", "Client events may be stored and delivered offline"],
    ["subscription_count", "bool", "Subscription counting (pusher:subscription_count)"],
    ["legacy_auth", "bool", "Also accept Pushi's older presence signature"],
  ]],
  ["Limits", [
    ["max_connections", "optuint", "Connections (empty: no limit)"],
    ["max_payload_bytes", "uint", "Event data bytes"],
    ["max_presence_members", "uint", "Members per presence channel"],
    ["max_presence_user_info_bytes", "uint", "Presence user_info bytes"],
    ["max_presence_user_id_len", "uint", "Presence user id length"],
    ["max_subscriptions_per_socket", "uint", "Channels per socket"],
    ["max_event_name_len", "uint", "Event name bytes"],
    ["max_channels_per_publish", "uint", "Channels per publish"],
  ]],
  ["Retention", [
    ["history_max_age_secs", "optuint", "Keep stored events for (seconds; empty: forever)"],
    ["history_max_per_channel", "optuint", "Stored events per channel (empty: all)"],
    ["deliveries_max_age_secs", "uint", "Keep finished deliveries for (seconds)"],
  ]],
  ["Webhooks", [["webhooks", "webhooks", "Pusher-style app webhooks"]]],
  ["Web Push (VAPID)", [
    ["vapid_key", "secret-area", "VAPID private key (PEM or base64url)"],
    ["vapid_email", "opttext", "VAPID contact (e-mail or https URL)"],
  ]],
  ["E-mail (SMTP)", [["smtp_url", "secret", "SMTP URL: smtp[s]://user:password@host:port?sender=addr"]]],
  ["Apple push (APNs)", [
    ["apn_auth_key", "secret-area", "Token auth: .p8 key (PEM)"],
    ["apn_key_id", "opttext", "Key id"],
    ["apn_team_id", "opttext", "Team id"],
    ["apn_topic", "opttext", "Topic (bundle id)"],
    ["apn_cer", "secret-area", "Certificate auth: certificate (PEM)"],
    ["apn_key", "secret-area", "Certificate auth: key (PEM)"],
    ["apn_sandbox", "bool", "Use Apple's sandbox"],
    ["apn_url", "opttext", "APNs URL override"],
  ]],
];
const OWN_FIELDS = new Set(["name", "description", "enabled"]);
const WEBHOOK_TYPES = ["channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event", "cache_miss", "subscription_count"];

function valueOf(app, name) {
  return OWN_FIELDS.has(name) ? app[name] : app.settings[name];
}

function renderDetail() {
  const app = currentApp();
  $("app-detail").hidden = !app;
  if (!app) return;
  $("detail-title").textContent = `${app.name} (app ${app.id})`;
  $("cred-id").textContent = app.id;
  $("cred-key").textContent = app.key;
  $("cred-secret").textContent = app.secret;
  $("cred-secret").classList.add("masked");
  $("show-secret").textContent = "show";
  $("rotate-secret").disabled = app.configured;
  $("configured-note").hidden = !app.configured;
  say($("settings-message"), "");
  const sections = FIELDS.map(([title, fields]) =>
    el("fieldset", {}, el("legend", {}, title), fields.map(([name, kind, label]) => fieldEditor(app, name, kind, label))),
  );
  $("settings-fields").replaceChildren(...sections);
  for (const input of $("settings-form").querySelectorAll("input, textarea, select, button")) {
    input.disabled = app.configured || (input.dataset.field === "enabled" && state.role.role !== "admin");
  }
  $("settings-form").querySelector("button[type=submit]").disabled = app.configured;
}

function fieldEditor(app, name, kind, label) {
  const value = valueOf(app, name);
  const id = `field-${name}`;
  const wrap = (input, extra) => el("div", { class: `field ${kind}`, "data-name": name }, el("label", { for: id }, label), input, extra);
  switch (kind) {
    case "bool":
      return el("div", { class: "field bool", "data-name": name }, el("label", {}, el("input", { id, type: "checkbox", checked: Boolean(value), "data-field": name }), " ", label));
    case "uint":
    case "optuint":
      return wrap(el("input", { id, type: "number", min: 0, step: 1, value: value ?? "", "data-field": name }));
    case "text":
    case "opttext":
      return wrap(el("input", { id, value: value ?? "", "data-field": name }));
    case "textarea":
      return wrap(el("textarea", { id, rows: 2, "data-field": name }, value ?? ""));
    case "secret":
    case "secret-area": {
      const input = kind === "secret" ? el("input", { id, type: "password", autocomplete: "off", "data-field": name }) : el("textarea", { id, rows: 3, "data-field": name });
      input.placeholder = value ? "set (leave empty to keep)" : "not set";
      const clear = value ? el("label", { class: "clear" }, el("input", { type: "checkbox", "data-clear": name }), " clear") : null;
      return wrap(input, clear);
    }
    case "webhooks":
      return el("div", { class: "field webhooks", "data-name": name }, el("div", { id: "webhook-list" }, (value ?? []).map(webhookRow)), el("button", { type: "button", id: "add-webhook", onclick: () => $("webhook-list").append(webhookRow({ url: "", event_types: [] })) }, "Add webhook"));
  }
  return null;
}

function webhookRow(hook) {
  const row = el(
    "div",
    { class: "webhook" },
    el("input", { class: "webhook-url", placeholder: "https://example.com/pusher/webhook", value: hook.url }),
    el("div", { class: "types" }, WEBHOOK_TYPES.map((t) => el("label", {}, el("input", { type: "checkbox", value: t, checked: hook.event_types.includes(t) }), " ", t))),
    el("button", { type: "button", class: "link", onclick: () => row.remove() }, "remove"),
  );
  return row;
}

/// The changes the form holds, as the admin API takes them.
function formChanges(app) {
  const changes = {};
  for (const [, fields] of FIELDS) {
    for (const [name, kind] of fields) {
      const input = document.querySelector(`[data-field="${name}"]`);
      const old = valueOf(app, name);
      let value;
      switch (kind) {
        case "bool":
          value = input.checked;
          break;
        case "uint":
          value = input.value === "" ? old : Number(input.value);
          break;
        case "optuint":
          value = input.value === "" ? null : Number(input.value);
          break;
        case "text":
          value = input.value;
          break;
        case "opttext":
        case "textarea":
          value = input.value === "" ? null : input.value;
          break;
        case "secret":
        case "secret-area": {
          const clear = document.querySelector(`[data-clear="${name}"]`);
          if (input.value !== "") changes[name] = input.value;
          else if (clear?.checked) changes[name] = null;
          continue;
        }
        case "webhooks":
          value = [...document.querySelectorAll("#webhook-list .webhook")]
            .map((row) => ({
              url: row.querySelector(".webhook-url").value.trim(),
              event_types: [...row.querySelectorAll(".types input:checked")].map((c) => c.value),
            }))
            .filter((h) => h.url !== "");
          break;
      }
      if (JSON.stringify(value ?? null) !== JSON.stringify(old ?? null)) changes[name] = value;
    }
  }
  return changes;
}

async function saveSettings(event) {
  event.preventDefault();
  const app = currentApp();
  for (const bad of document.querySelectorAll(".field.invalid")) bad.classList.remove("invalid");
  const changes = formChanges(app);
  if (Object.keys(changes).length === 0) return say($("settings-message"), "Nothing changed.");
  try {
    const saved = await api("PATCH", appPath(), changes);
    replaceApp(saved);
    say($("settings-message"), `Saved: ${Object.keys(changes).join(", ")}.`);
  } catch (error) {
    const field = /^([a-z_]+)(\[\d+\])?[.:]/.exec(error.message)?.[1];
    document.querySelector(`.field[data-name="${field}"]`)?.classList.add("invalid");
    say($("settings-message"), error.message, true);
  }
}

function replaceApp(app) {
  state.apps = state.apps.map((a) => (a.id === app.id ? app : a));
  renderAppsTable();
  renderDetail();
}

async function rotateSecret() {
  const app = currentApp();
  if (!confirm(`Rotate the secret of app ${app.id}? Servers signing with the old secret will be refused at once.`)) return;
  try {
    const rotated = await api("POST", appPath("/secret"));
    if (state.creds.kind === "app" && state.creds.key === rotated.key) {
      state.creds = { ...state.creds, secret: rotated.secret };
      sessionStorage.setItem("pushi-dashboard", JSON.stringify(state.creds));
      startStream();
    }
    replaceApp(rotated);
    say($("settings-message"), "Secret rotated.");
  } catch (error) {
    say($("settings-message"), error.message, true);
  }
}

async function createApp(event) {
  event.preventDefault();
  try {
    const app = await api("POST", "/apps", { name: $("create-name").value });
    $("create-name").value = "";
    await loadApps(app.id);
  } catch (error) {
    alert(error.message);
  }
}

// --- live view and debug console: one event stream per selected app ------------------------

function stopStream() {
  state.stream?.abort();
  state.stream = null;
}

function startStream() {
  stopStream();
  if (!state.appId) return;
  const controller = new AbortController();
  state.stream = controller;
  const appId = state.appId;
  const run = async () => {
    while (!controller.signal.aborted) {
      try {
        setLiveState("connecting");
        const response = await fetch(`/admin/api${appPath("/stream")}`, {
          headers: { Authorization: authorization(state.creds), Accept: "text/event-stream" },
          signal: controller.signal,
        });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        setLiveState("live");
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            handleStreamBlock(appId, buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      } catch (error) {
        if (controller.signal.aborted) return;
      }
      setLiveState("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  };
  run();
}

function setLiveState(text) {
  $("live-state").textContent = text;
  $("live-state").dataset.state = text;
}

function handleStreamBlock(appId, block) {
  let name = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).replace(/^ /, "");
  }
  if (!data || appId !== state.appId) return;
  const value = JSON.parse(data);
  if (name === "snapshot") renderLive(value);
  else if (name === "debug") addConsoleEvent(value);
  else if (name === "lagged") addConsoleEvent({ type: "lagged", time_ms: Date.now(), missed: value.missed });
}

function renderLive(snapshot) {
  $("live-connections").textContent = snapshot.connections;
  $("live-channels").textContent = snapshot.channel_count;
  $("live-node").textContent = snapshot.node ? `node ${snapshot.node}` : "";
  const channels = snapshot.channels.map((c) =>
    el(
      "tr",
      { "data-channel": c.name },
      el("td", {}, el("code", {}, c.name)),
      el("td", { class: "num" }, c.subscription_count),
      el("td", {}, c.members ? el("ul", { class: "members" }, c.members.map((m) => el("li", {}, el("code", {}, m.id), " ", el("small", {}, JSON.stringify(m.info))))) : "—"),
    ),
  );
  fill($("channels-table").tBodies[0], channels, "no occupied channels");
  const sockets = snapshot.sockets.map((s) => el("tr", {}, el("td", {}, el("code", {}, s.socket_id)), el("td", {}, s.channels.join(", "))));
  fill($("sockets-table").tBodies[0], sockets, "no sockets");
}

function addConsoleEvent(event) {
  if (state.paused) return;
  state.consoleEvents.unshift(event);
  state.consoleEvents.length = Math.min(state.consoleEvents.length, MAX_CONSOLE_ROWS);
  if (matchesFilters(event)) $("console-table").tBodies[0].prepend(consoleRow(event));
  const rows = $("console-table").tBodies[0].rows;
  while (rows.length > MAX_CONSOLE_ROWS) rows[rows.length - 1].remove();
  $("console-table").tBodies[0].querySelector(".empty")?.parentElement.remove();
}

function matchesFilters(event) {
  const channel = $("filter-channel").value.trim();
  const name = $("filter-event").value.trim();
  if (event.type !== "published" && !$("filter-lifecycle").checked) return false;
  if (channel) {
    const channels = event.channels ?? (event.channel ? [event.channel] : []);
    if (!channels.some((c) => c.includes(channel))) return false;
  }
  if (name && !(event.event ?? "").includes(name)) return false;
  return true;
}

function consoleRow(event) {
  const channels = event.channels ? event.channels.join(", ") : (event.channel ?? "");
  let details;
  switch (event.type) {
    case "published":
      details = [
        el("code", { class: "data" }, event.data + (event.truncated ? " …" : "")),
        el("small", {}, ` ${event.frames} frame(s)${event.socket_id ? ` · client event from ${event.socket_id}` : ""}${event.remote ? " · from another node" : ""}`),
      ];
      break;
    case "lagged":
      details = `the console fell behind: ${event.missed} event(s) not shown`;
      break;
    default:
      details = `socket ${event.socket_id}${event.user_id ? ` · user ${event.user_id}` : ""}`;
  }
  return el(
    "tr",
    { class: `event ${event.type}`, "data-type": event.type },
    el("td", { class: "time" }, time(event.time_ms)),
    el("td", {}, el("span", { class: `badge ${event.type}` }, event.type)),
    el("td", {}, el("code", {}, channels)),
    el("td", {}, el("code", {}, event.event ?? "")),
    el("td", {}, details),
  );
}

function renderConsole() {
  const rows = state.consoleEvents.filter(matchesFilters).map(consoleRow);
  fill($("console-table").tBodies[0], rows, "waiting for events…");
}

async function publish(event) {
  event.preventDefault();
  const text = $("publish-data").value;
  let data = text;
  try {
    data = text.trim() === "" ? "" : JSON.parse(text);
  } catch {
    // Not JSON: sent as a plain string.
  }
  try {
    const result = await api("POST", appPath("/events"), {
      channel: $("publish-channel").value.trim(),
      event: $("publish-event").value.trim(),
      data,
    });
    say($("publish-result"), `Published to ${result.channels.join(", ")} (${result.frames} frame(s) on this node).`);
  } catch (error) {
    say($("publish-result"), error.message, true);
  }
}

// --- outbox --------------------------------------------------------------------------------

function stopOutbox() {
  clearInterval(state.outboxTimer);
  state.outboxTimer = null;
}

function startOutbox() {
  stopOutbox();
  loadOutbox();
  state.outboxTimer = setInterval(loadOutbox, 2000);
}

async function loadOutbox() {
  if (!state.appId) return;
  const status = $("outbox-status").value;
  try {
    const { deliveries, counts } = await api("GET", appPath(`/deliveries?count=200${status ? `&status=${status}` : ""}`));
    for (const name of ["pending", "failed", "delivered"]) $(`count-${name}`).textContent = counts[name];
    const rows = deliveries.map((d) =>
      el(
        "tr",
        { "data-delivery": d.id, class: d.status },
        el("td", {}, d.id),
        el("td", {}, d.kind),
        el("td", {}, el("code", {}, d.target)),
        el("td", {}, el("span", { class: `badge ${d.status}` }, d.status)),
        el("td", { class: "num" }, d.attempts),
        el("td", {}, d.status === "pending" ? time(d.next_attempt_ms) : "—"),
        el("td", { class: "reason" }, d.status === "delivered" ? "" : (d.last_error ?? "")),
        el(
          "td",
          {},
          d.status !== "delivered" ? el("button", { type: "button", class: "retry", onclick: () => outboxAction(d.id, "retry") }, "Retry now") : null,
          d.status === "pending" ? el("button", { type: "button", class: "give-up", onclick: () => outboxAction(d.id, "give_up") }, "Give up") : null,
        ),
      ),
    );
    fill($("outbox-table").tBodies[0], rows, "no deliveries");
  } catch (error) {
    say($("outbox-message"), error.message, true);
  }
}

async function outboxAction(id, action) {
  try {
    const d = await api("POST", appPath(`/deliveries/${id}/${action}`));
    say($("outbox-message"), `Delivery ${id}: ${d.status}.`);
  } catch (error) {
    say($("outbox-message"), error.message, true);
  }
  loadOutbox();
}

// --- navigation ----------------------------------------------------------------------------

function showTab(tab) {
  state.tab = tab;
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.tab === tab);
  for (const page of document.querySelectorAll(".page")) page.hidden = page.id !== `page-${tab}`;
  if (tab === "outbox") startOutbox();
  else stopOutbox();
  if (tab === "apps" && state.creds) loadApps().catch(() => {});
}

document.addEventListener("DOMContentLoaded", () => {
  $("admin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn({ kind: "admin", token: $("admin-token").value }).catch((error) => say($("sign-in-error"), error.message, true));
  });
  $("app-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn({ kind: "app", key: $("app-key").value.trim(), secret: $("app-secret").value.trim() }).catch((error) =>
      say($("sign-in-error"), error.message, true),
    );
  });
  $("sign-out").addEventListener("click", () => signOut());
  for (const button of document.querySelectorAll("#tabs button")) button.addEventListener("click", () => showTab(button.dataset.tab));
  $("app-select").addEventListener("change", (e) => selectApp(e.target.value));
  $("create-form").addEventListener("submit", createApp);
  $("settings-form").addEventListener("submit", saveSettings);
  $("rotate-secret").addEventListener("click", rotateSecret);
  $("show-secret").addEventListener("click", () => {
    const masked = $("cred-secret").classList.toggle("masked");
    $("show-secret").textContent = masked ? "show" : "hide";
  });
  $("publish-form").addEventListener("submit", publish);
  for (const id of ["filter-channel", "filter-event", "filter-lifecycle"]) $(id).addEventListener("input", renderConsole);
  $("console-pause").addEventListener("click", () => {
    state.paused = !state.paused;
    $("console-pause").textContent = state.paused ? "Resume" : "Pause";
  });
  $("console-clear").addEventListener("click", () => {
    state.consoleEvents = [];
    renderConsole();
  });
  $("outbox-status").addEventListener("change", loadOutbox);
  renderConsole();
  // The sign-in forms show only now that their handlers exist, so a quick click never
  // submits them as plain HTML forms.
  const saved = sessionStorage.getItem("pushi-dashboard");
  if (saved) signIn(JSON.parse(saved)).catch(() => signOut());
  else $("sign-in").hidden = false;
});
