// openchamber's chat view: wires the bridge's event socket to the store and the renderer, and
// the user's actions to the bridge's commands.

import { api, sessionPath } from "./api.js";
import { EventSocket } from "./connection.js";
import { messageId, partId } from "./ids.js";
import { Renderer } from "./render.js";
import { Store } from "./state.js";

const PAGE = 30; // messages per load-older request
const OLDER_TRIGGER_PX = 200;
const SEND_RETRY_MAX_MS = 5000;

const store = new Store();
const socket = new EventSocket(onFrame, () => renderer.renderBadge());
const pendingSends = new Map(); // messageID -> {sessionID, text, partID, created}: not yet accepted
let firstSnapshot = true;

const $ = (id) => document.getElementById(id);
const composer = $("composer");

const renderer = new Renderer(store, socket, {
  select,
  remove: deleteSession,
  reply: (requestID, sessionID, reply) =>
    api("POST", `/api/permissions/${encodeURIComponent(requestID)}`, { sessionID, reply }),
  answer: (requestID, sessionID, answers) =>
    api("POST", `/api/questions/${encodeURIComponent(requestID)}`, { sessionID, answers }),
  reject: (requestID, sessionID) =>
    api("POST", `/api/questions/${encodeURIComponent(requestID)}`, { sessionID, reject: true }),
  retry: retrySend,
  edit: (messageID, text) => changeQueued("PUT", messageID, { text }),
  cancel: (messageID) => changeQueued("DELETE", messageID),
});

// ------------------------------------------------------------------ the event stream

const debugging = () => localStorage.getItem("openchamber_stream_debug") === "1";

/** One console line per socket message: what came, and each touched part's text length. */
function trace(frame) {
  const touched = new Map();
  for (const patch of frame.patches || []) {
    const partID = patch.partID ?? patch.part?.id;
    if (partID && patch.op.startsWith("part.")) touched.set(partID, patch);
  }
  const lengths = [...touched].map(([partID, patch]) => {
    const part = store.message(patch.sessionID, patch.messageID)?.parts.get(partID);
    const length = typeof part?.text === "string" ? part.text.length : "-";
    return `${partID}:${part?.type ?? "removed"}=${length}`;
  });
  const count = frame.patches ? frame.patches.length : 0;
  console.log(`[STREAM-TRACE] type=${frame.type} cursor=${frame.cursor} patches=${count} ${lengths.join(" ")}`);
}

function onFrame(frame) {
  if (frame.type === "snapshot") {
    store.loadSnapshot(frame.snapshot);
    restorePendingSends();
    afterSnapshot();
  } else if (frame.type === "patches") {
    store.applyPatches(frame.patches);
  } else {
    return;
  }
  if (debugging()) trace(frame);
  notifyFinished(store.changes.finished.splice(0));
  if (renderer.session !== null && !store.sessions.has(renderer.session)) {
    select(null, { focus: false }); // the open session was deleted
  }
  renderer.schedule();
}

/** A snapshot replaced the store: messages sent here but not yet accepted stay on screen. */
function restorePendingSends() {
  for (const [messageID, send] of pendingSends) {
    if (!store.message(send.sessionID, messageID)) showOptimistic(messageID, send);
  }
}

function afterSnapshot() {
  if (firstSnapshot) {
    firstSnapshot = false;
    const wanted = decodeURIComponent(location.hash.slice(1));
    const sessions = [...store.sessions.values()].filter((info) => !info.parentID);
    const latest = sessions.sort((a, b) => (b.time?.updated ?? 0) - (a.time?.updated ?? 0))[0];
    select(store.sessions.has(wanted) ? wanted : latest ? latest.id : null, { focus: false });
    return;
  }
  // The bridge may have dropped what this view had loaded (another launch): load again.
  if (renderer.session !== null && !store.threads.has(renderer.session)) {
    renderer.older.delete(renderer.session);
    loadMessages(renderer.session);
  }
}

// ------------------------------------------------------------------ sessions

function select(sessionID, { focus = true } = {}) {
  renderer.open(sessionID);
  const hash = sessionID === null ? "" : `#${encodeURIComponent(sessionID)}`;
  history.replaceState(null, "", `${location.pathname}${location.search}${hash}`);
  setSidebar(false);
  if (sessionID !== null && !store.threads.has(sessionID)) loadMessages(sessionID);
  if (focus) composer.focus();
}

async function createSession() {
  const info = await api("POST", "/api/sessions", {});
  store.apply({ op: "session.upsert", sessionID: info.id, info });
  select(info.id);
  return info.id;
}

async function deleteSession(sessionID) {
  try {
    await api("DELETE", sessionPath(sessionID));
  } catch (failure) {
    showToast(`Could not delete the session: ${failure.message}`);
  }
}

/** Load the page of messages before the oldest one shown (the newest page if none is). */
async function loadMessages(sessionID) {
  const older = renderer.older.get(sessionID) || { loading: false, exhausted: false, error: "" };
  if (older.loading || older.exhausted) return;
  older.loading = true;
  older.error = "";
  renderer.older.set(sessionID, older);
  renderer.schedule();
  const oldest = store.threads.get(sessionID)?.order[0];
  const query = new URLSearchParams({ limit: String(PAGE) });
  if (oldest) query.set("before", oldest);
  try {
    const answer = await api("GET", sessionPath(sessionID, `/messages?${query}`));
    const entries = Array.isArray(answer) ? answer : answer?.messages || [];
    let added = 0;
    store.thread(sessionID); // loaded, even if empty
    for (const entry of entries) {
      // Known messages are newer in the store (patches); only fill in the missing ones.
      if (entry?.info?.id && !store.message(sessionID, entry.info.id)) {
        store.putMessage(sessionID, entry);
        added += 1;
      }
    }
    older.exhausted = entries.length < PAGE || (oldest !== undefined && added === 0);
  } catch (failure) {
    older.error = failure.message;
  } finally {
    older.loading = false;
    store.changes.threads.add(sessionID);
    renderer.schedule();
  }
}

$("messages").addEventListener("scroll", () => {
  const sessionID = renderer.session;
  const top = $("messages").scrollTop;
  // Only the reader scrolling up asks for older messages, not the renderer keeping a short,
  // still-filling list at its bottom.
  if (sessionID !== null && top !== renderer.scrolledTo && top < OLDER_TRIGGER_PX) {
    loadMessages(sessionID);
  }
}, { passive: true });
$("load-older").addEventListener("click", () => {
  if (renderer.session !== null) loadMessages(renderer.session);
});

$("new-session").addEventListener("click", () =>
  createSession().catch((failure) => showToast(`Could not create a session: ${failure.message}`)));

// ------------------------------------------------------------------ sending

function showOptimistic(messageID, send) {
  const info = { id: messageID, sessionID: send.sessionID, role: "user", time: { created: send.created } };
  store.upsertMessage(send.sessionID, info, { state: "sending" });
  store.upsertPart(send.sessionID, messageID, {
    id: send.partID, sessionID: send.sessionID, messageID, type: "text", text: send.text,
  });
}

function setLocal(send, messageID, local) {
  store.apply({ op: "message.local", sessionID: send.sessionID, messageID, local });
  renderer.schedule();
}

/**
 * POST the message until the bridge answers. A network error leaves it unknown whether the
 * bridge got it, so the same messageID is sent again: the bridge sends a messageID once.
 */
async function post(messageID) {
  const send = pendingSends.get(messageID);
  for (let attempt = 0; ; attempt += 1) {
    try {
      await api("POST", sessionPath(send.sessionID, "/messages"), {
        text: send.text, messageID, partID: send.partID,
      });
      pendingSends.delete(messageID);
      return;
    } catch (failure) {
      if (!failure.network) {
        setLocal(send, messageID, { state: "failed", error: failure.message });
        return; // kept in pendingSends: the Retry button sends it again
      }
      setLocal(send, messageID, { state: "sending", error: "connection lost, retrying…" });
      const ceiling = Math.min(SEND_RETRY_MAX_MS, 250 * 2 ** attempt);
      await new Promise((resolve) => setTimeout(resolve, ceiling * (0.5 + Math.random() / 2)));
    }
  }
}

async function send() {
  const text = composer.value;
  if (!text.trim()) return;
  let sessionID = renderer.session;
  if (sessionID === null) {
    try {
      sessionID = await createSession();
    } catch (failure) {
      showToast(`Could not create a session: ${failure.message}`);
      return;
    }
  }
  composer.value = "";
  autosize();
  const messageID = messageId();
  const pending = { sessionID, text, partID: partId(), created: Date.now() };
  pendingSends.set(messageID, pending);
  showOptimistic(messageID, pending);
  renderer.schedule();
  await post(messageID);
}

function retrySend(sessionID, messageID) {
  if (!pendingSends.has(messageID)) {
    // Failed at the bridge: rebuild the send from the message as the store holds it.
    const message = store.message(sessionID, messageID);
    const part = message && message.order.map((id) => message.parts.get(id)).find((p) => p.type === "text");
    if (!part) return;
    pendingSends.set(messageID, { sessionID, text: part.text, partID: part.id, created: Date.now() });
  }
  setLocal(pendingSends.get(messageID), messageID, { state: "sending" });
  post(messageID);
}

/** Edit or withdraw a message still waiting in the bridge's outbox. */
async function changeQueued(method, messageID, body) {
  try {
    await api(method, `/api/outbox/${encodeURIComponent(messageID)}`, body);
  } catch (failure) {
    // 409: it is on its way (or was withdrawn elsewhere) by the time this arrived.
    showToast(failure.status === 409
      ? "That message is already on its way: it goes as it was."
      : `Could not change the queued message: ${failure.message}`);
  }
}

$("composer-form").addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});
composer.addEventListener("keydown", (event) => {
  // Enter sends; Shift+Enter is a newline; Enter that confirms an IME composition is neither.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
    event.preventDefault();
    send();
  }
});

function autosize() {
  composer.style.height = "auto";
  composer.style.height = `${Math.min(composer.scrollHeight, window.innerHeight * 0.4)}px`;
}
composer.addEventListener("input", autosize);

$("abort").addEventListener("click", async () => {
  const sessionID = renderer.session;
  if (sessionID === null) return;
  try {
    await api("POST", sessionPath(sessionID, "/abort"));
  } catch (failure) {
    showToast(`Could not stop: ${failure.message}`);
  }
});

// ------------------------------------------------------------------ notifications

const notifyButton = $("notify");

function updateNotifyButton() {
  notifyButton.hidden = !("Notification" in window) || Notification.permission !== "default";
}

notifyButton.addEventListener("click", async () => {
  await Notification.requestPermission(); // only ever on the user's click
  updateNotifyButton();
});

function notifyFinished(sessionIDs) {
  if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
  for (const sessionID of sessionIDs) {
    const title = store.sessions.get(sessionID)?.title || "openchamber";
    const notification = new Notification("Reply finished", { body: title, tag: sessionID });
    notification.onclick = () => {
      window.focus();
      select(sessionID);
      notification.close();
    };
  }
}

// ------------------------------------------------------------------ layout and misc

function setSidebar(open) {
  document.body.classList.toggle("sidebar-open", open);
  $("toggle-sidebar").setAttribute("aria-expanded", String(open));
}
document.querySelector(".backdrop").addEventListener("click", () => setSidebar(false));
$("toggle-sidebar").addEventListener("click", () =>
  setSidebar(!document.body.classList.contains("sidebar-open")));
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && document.body.classList.contains("sidebar-open")) {
    setSidebar(false);
    $("toggle-sidebar").focus();
  }
});

let toastTimer = 0;
function showToast(text) {
  const toast = $("toast");
  toast.textContent = text;
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (toast.hidden = true), 6000);
}

// Countdowns in the connection badge ("reconnecting in 3s") tick once a second.
setInterval(() => renderer.renderBadge(), 1000);

Object.defineProperty(window, "openchamber", {
  value: Object.freeze({
    get state() {
      return store.toJSON();
    },
    cursor: () => socket.cursor,
  }),
  writable: false,
  configurable: false,
});

updateNotifyButton();
socket.start();
