// Puts the store on screen. Patches only mark what changed (store.changes); once per animation
// frame the renderer updates exactly that: the session list, the open thread's message order,
// the messages and parts that changed. Part contents are rendered within a time budget per
// frame (newest first), so neither a fast stream nor opening a long session makes a long task.

import { h, placeChildren, setText, truncate } from "./dom.js";
import { PartView } from "./parts.js";

const FRAME_BUDGET_MS = 8;
const STICK_PX = 48; // this close to the bottom, new content keeps the view at the bottom

function sessionTitle(info) {
  return (info && info.title) || "Untitled session";
}

function sortSessions(infos) {
  const updated = (info) => info.time?.updated ?? info.time?.created ?? 0;
  return infos.sort((a, b) => updated(b) - updated(a) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function errorText(error) {
  if (!error) return "";
  if (typeof error === "string") return error;
  return error.data?.message || error.message || error.name || "error";
}

export class Renderer {
  /**
   * @param store  the Store
   * @param socket  the EventSocket (for the connection badge)
   * @param actions  callbacks into the app: select, remove, reply, answer, reject, retry, older
   */
  constructor(store, socket, actions) {
    this.store = store;
    this.socket = socket;
    this.actions = actions;
    this.session = null; // the open session's id
    this.sessionItems = new Map(); // sessionID -> <li>
    this.messageViews = new Map(); // messageID -> {el, parts, footer, partViews: Map}
    this.queue = new Map(); // partID -> messageID: part contents still to render
    this.timers = new Map(); // partID -> timeout of a throttled streaming render
    this.promptViews = new Map(); // requestID -> element
    this.older = new Map(); // sessionID -> {loading, exhausted, error}
    this.frame = 0;
    this.scrolledTo = 0; // the list's scrollTop as the last render left it
    this.switched = true;
    this.els = Object.fromEntries(["session-list", "messages", "message-list", "load-older",
      "older-status", "session-title", "connection", "abort", "prompts", "session-error",
      "typing", "empty", "offline", "unconfirmed"].map((id) => [id, document.getElementById(id)]));
    this.app = document.querySelector(".app");
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  open(sessionID) {
    this.session = sessionID;
    this.switched = true;
    this.schedule();
  }

  flush() {
    this.frame = 0;
    const started = performance.now();
    const c = this.store.changes;
    const list = this.els.messages;
    const stick = this.switched || list.scrollHeight - list.scrollTop - list.clientHeight < STICK_PX;
    const anchor = stick ? null : this.anchor();

    if (c.full || this.switched) this.resetThread();
    if (c.full || c.sessions || c.prompts || c.confirmed || this.switched) {
      this.renderSessions();
      this.renderHeader();
    }
    if (c.full || c.connection) this.renderBadge();
    if (c.full || c.confirmed) this.renderConfirmed();
    if (c.full || c.prompts || c.sessions || this.switched) this.renderPrompts();
    if (c.full || c.errors || this.switched) this.renderError();
    const thread = this.session === null ? null : this.store.threads.get(this.session);
    if (thread && (c.full || this.switched || c.threads.has(this.session))) {
      this.renderThread(thread);
    }
    for (const [messageID, sessionID] of c.messages) {
      if (sessionID === this.session && this.messageViews.has(messageID)) {
        this.renderMessage(sessionID, messageID);
      }
    }
    for (const [partID, where] of c.parts) {
      if (where.sessionID === this.session) this.queue.set(partID, where.messageID);
    }
    this.renderOlder();
    c.clear();
    this.switched = false;
    this.drainQueue(started);

    if (stick) list.scrollTop = list.scrollHeight;
    else if (anchor) list.scrollTop += anchor.el.offsetTop - anchor.top;
    // Where this render left the list: a scroll event there is ours, not the reader's.
    this.scrolledTo = list.scrollTop;
  }

  /** The first message visible at the top, and where it is: kept in place across updates. */
  anchor() {
    const top = this.els.messages.scrollTop;
    for (const child of this.els["message-list"].children) {
      if (child.offsetTop + child.offsetHeight > top) return { el: child, top: child.offsetTop };
    }
    return null;
  }

  // ------------------------------------------------------------------ sessions

  renderSessions() {
    const store = this.store;
    // Subagent sessions (with a parent) belong to their parent's turn, not to the list.
    const infos = sortSessions([...store.sessions.values()].filter((info) => !info.parentID));
    const attention = new Set();
    for (const request of [...store.permissions.values(), ...store.questions.values()]) {
      attention.add(request.sessionID);
    }
    const items = infos.map((info) => {
      let item = this.sessionItems.get(info.id);
      if (!item) {
        item = this.sessionItem(info.id);
        this.sessionItems.set(info.id, item);
      }
      const title = sessionTitle(info);
      const status = store.status.get(info.id)?.type || "idle";
      item.dataset.status = status;
      item.dataset.attention = attention.has(info.id) ? "true" : "false";
      setText(item.querySelector(".session-name"), title);
      const unconfirmed = store.confirmed ? "" : ", not yet confirmed";
      setText(item.querySelector(".session-state"),
        `, ${status}${attention.has(info.id) ? ", needs your answer" : ""}${unconfirmed}`);
      item.querySelector(".session-delete").setAttribute("aria-label", `Delete session ${title}`);
      if (info.id === this.session) item.setAttribute("aria-current", "true");
      else item.removeAttribute("aria-current");
      return item;
    });
    const shown = new Set(infos.map((info) => info.id));
    for (const id of this.sessionItems.keys()) if (!shown.has(id)) this.sessionItems.delete(id);
    placeChildren(this.els["session-list"], items);
  }

  sessionItem(sessionID) {
    const remove = h("button", {
      class: "session-delete",
      text: "✕",
      data: { testid: "session-delete" },
      attrs: { type: "button" },
    });
    // Two steps instead of a blocking confirm(): the first press arms, the second deletes.
    let armed = 0;
    const disarm = () => {
      clearTimeout(armed);
      armed = 0;
      remove.classList.remove("armed");
      remove.textContent = "✕";
    };
    remove.addEventListener("click", () => {
      if (armed) {
        disarm();
        this.actions.remove(sessionID);
        return;
      }
      remove.classList.add("armed");
      remove.textContent = "Delete?";
      armed = setTimeout(disarm, 4000);
    });
    remove.addEventListener("blur", disarm);
    const open = h("button", {
      class: "session-open",
      attrs: { type: "button" },
      on: { click: () => this.actions.select(sessionID) },
    }, h("span", { class: "dot", attrs: { "aria-hidden": "true" } }),
    h("span", { class: "session-name" }),
    h("span", { class: "session-state visually-hidden" }));
    return h("li", { class: "session", data: { testid: "session-item", sessionId: sessionID } },
      open, remove);
  }

  renderHeader() {
    const info = this.session === null ? null : this.store.sessions.get(this.session);
    setText(this.els["session-title"], this.session === null ? "No session" : sessionTitle(info));
    document.title = this.session === null ? "openchamber" : `${sessionTitle(info)} · openchamber`;
    const busy = this.session !== null && this.store.isBusy(this.session);
    this.els.abort.hidden = !busy;
    this.els.typing.hidden = !busy;
    this.els.messages.setAttribute("aria-busy", busy ? "true" : "false");
  }

  // ------------------------------------------------------------------ connection badge

  /** The badge: this view's own socket first, then OpenCode's stream as the bridge sees it. */
  renderBadge() {
    const socket = this.socket;
    const upstream = this.store.connection;
    const now = Date.now();
    const seconds = (at) => Math.max(0, Math.ceil((at - now) / 1000));
    let state;
    let text;
    let scope = "view";
    let hint = "";
    let countdown = null; // seconds; kept out of the live region so it is not read every second
    if (socket.phase === "auth-failed") {
      [state, text] = ["auth-failed", "auth failed"];
      hint = "This page's token was refused: open the URL that `openchamber serve` printed.";
    } else if (socket.phase === "waiting") {
      [state, text, countdown] = ["reconnecting", "reconnecting", seconds(socket.retryAt)];
      hint = "The connection to openchamber was lost.";
    } else if (socket.phase === "connecting") {
      [state, text] = ["connecting", "connecting…"];
    } else {
      scope = "opencode";
      state = upstream.state;
      hint = upstream.hint || "";
      switch (state) {
        case "connected":
          text = "connected";
          break;
        case "reconnecting":
          text = "reconnecting";
          if (typeof upstream.delay === "number") countdown = seconds(upstream.at + upstream.delay * 1000);
          break;
        case "auth-failed":
          text = "auth failed";
          break;
        case "stale":
          text = "connection stale";
          break;
        default:
          text = state === "connecting" ? "connecting…" : state;
      }
    }
    // Offline: this view reaches the bridge, but the bridge does not reach OpenCode. What is
    // shown is the last known state, and sends wait in the bridge's outbox.
    this.els.offline.hidden = !(socket.phase === "open" && upstream.state !== "connected");
    const badge = this.els.connection;
    badge.dataset.state = state;
    badge.dataset.scope = scope;
    setText(badge.querySelector(".conn-label"), text);
    setText(badge.querySelector(".conn-countdown"), countdown === null ? "" : ` in ${countdown}s`);
    badge.title = scope === "opencode" && state !== "connected" ? `OpenCode: ${hint}` : hint;
  }

  /** Mark what came from the bridge's cache until the server has confirmed it (CSS marks
   * the sessions and messages through the attribute). */
  renderConfirmed() {
    this.app.dataset.confirmed = String(this.store.confirmed);
    this.els.unconfirmed.hidden = this.store.confirmed;
  }

  // ------------------------------------------------------------------ prompts

  renderPrompts() {
    const store = this.store;
    const wanted = [];
    for (const [kind, requests] of [["permission", store.permissions], ["question", store.questions]]) {
      for (const [id, request] of requests) {
        if (request.sessionID !== this.session) continue;
        let view = this.promptViews.get(id);
        if (!view) {
          view = kind === "permission" ? this.permissionView(request) : this.questionView(request);
          this.promptViews.set(id, view);
        }
        wanted.push(view);
      }
    }
    const shown = new Set(wanted);
    for (const [id, view] of this.promptViews) if (!shown.has(view)) this.promptViews.delete(id);
    placeChildren(this.els.prompts, wanted);
    this.els.prompts.hidden = wanted.length === 0;
  }

  permissionView(request) {
    const title = request.title || `Allow ${request.permission || request.type || "this action"}?`;
    const patterns = [].concat(request.patterns ?? request.pattern ?? []).filter(Boolean);
    const details = [];
    for (const [key, value] of Object.entries(request.metadata || {}).slice(0, 6)) {
      if (typeof value === "string" && value) details.push(`${key}: ${truncate(value, 300)}`);
    }
    const error = h("p", { class: "prompt-error", attrs: { role: "alert" } });
    error.hidden = true;
    const buttons = [["once", "Allow once"], ["always", "Always allow"], ["reject", "Reject"]].map(
      ([reply, label]) => h("button", {
        class: reply === "reject" ? "danger" : reply === "once" ? "primary" : "",
        text: label,
        data: { testid: `permission-${reply}`, reply },
        attrs: { type: "button" },
      }),
    );
    const view = h("section", {
      class: "prompt prompt-permission",
      data: { testid: "permission", requestId: request.id },
      attrs: { "aria-label": "Permission request" },
    },
    h("p", { class: "prompt-title", text: title }),
    patterns.length ? h("code", { class: "prompt-detail", text: truncate(patterns.join("\n"), 2000) }) : null,
    details.length ? h("pre", { class: "prompt-detail", text: details.join("\n") }) : null,
    h("div", { class: "prompt-actions" }, ...buttons),
    error);
    for (const button of buttons) {
      button.addEventListener("click", () =>
        this.submitPrompt(buttons, error, () =>
          this.actions.reply(request.id, request.sessionID, button.dataset.reply)));
    }
    return view;
  }

  questionView(request) {
    const questions = Array.isArray(request.questions) ? request.questions : [];
    const error = h("p", { class: "prompt-error", attrs: { role: "alert" } });
    error.hidden = true;
    const fields = questions.map((q, n) => {
      const name = `q-${request.id}-${n}`;
      const type = q.multiple ? "checkbox" : "radio";
      const options = (q.options || []).map((option) =>
        h("label", { class: "option" },
          h("input", { attrs: { type, name, value: option.label } }),
          h("span", { text: option.label }),
          option.description ? h("small", { text: option.description }) : null));
      const custom = h("input", {
        class: "custom",
        attrs: { type: "text", name: `${name}-custom`, "aria-label": "Your own answer" },
      });
      const legend = [q.header, q.question].filter(Boolean).join(": ");
      return h("fieldset", {}, h("legend", { text: legend }), ...options,
        h("label", { class: "option custom-option" }, h("span", { text: "Other:" }), custom));
    });
    const submit = h("button", {
      class: "primary", text: "Answer", data: { testid: "question-submit" }, attrs: { type: "submit" },
    });
    const reject = h("button", {
      class: "danger", text: "Dismiss", data: { testid: "question-reject" }, attrs: { type: "button" },
    });
    const form = h("form", {
      class: "prompt prompt-question",
      data: { testid: "question", requestId: request.id },
      attrs: { "aria-label": "Question" },
    }, ...fields, h("div", { class: "prompt-actions" }, submit, reject), error);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const answers = fields.map((fieldset) => {
        const picked = [...fieldset.querySelectorAll("input:checked")].map((input) => input.value);
        const own = fieldset.querySelector("input.custom").value.trim();
        return own ? [...picked, own] : picked;
      });
      this.submitPrompt([submit, reject], error, () =>
        this.actions.answer(request.id, request.sessionID, answers));
    });
    reject.addEventListener("click", () =>
      this.submitPrompt([submit, reject], error, () =>
        this.actions.reject(request.id, request.sessionID)));
    return form;
  }

  /** Disable the buttons while the answer is on its way; the prompt goes on its remove patch. */
  async submitPrompt(buttons, error, send) {
    for (const button of buttons) button.disabled = true;
    error.hidden = true;
    try {
      await send();
    } catch (failure) {
      error.textContent = `Could not send: ${failure.message}`;
      error.hidden = false;
      for (const button of buttons) button.disabled = false;
    }
  }

  renderError() {
    const error = this.store.errors.get(this.session ?? "") ?? this.store.errors.get("");
    const banner = this.els["session-error"];
    banner.hidden = !error;
    if (error) setText(banner, `The last turn failed: ${errorText(error)}`);
  }

  // ------------------------------------------------------------------ thread

  resetThread() {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.queue.clear();
    this.messageViews.clear();
    this.els["message-list"].replaceChildren();
    this.els.empty.hidden = this.session !== null;
  }

  renderThread(thread) {
    const views = thread.order.map((messageID) => {
      let view = this.messageViews.get(messageID);
      if (!view) {
        view = this.messageView(messageID);
        this.messageViews.set(messageID, view);
        this.renderMessage(this.session, messageID);
      }
      return view.el;
    });
    const present = new Set(thread.order);
    for (const [messageID, view] of this.messageViews) {
      if (present.has(messageID)) continue;
      for (const partID of view.partViews.keys()) this.forgetPart(partID);
      this.messageViews.delete(messageID);
    }
    placeChildren(this.els["message-list"], views);
  }

  messageView(messageID) {
    const parts = h("div", { class: "msg-parts" });
    const footer = h("div", { class: "msg-footer" });
    const el = h("article", { class: "msg", data: { testid: "message", messageId: messageID } },
      parts, footer);
    return { el, parts, footer, partViews: new Map(), editor: null };
  }

  renderMessage(sessionID, messageID) {
    const message = this.store.message(sessionID, messageID);
    const view = this.messageViews.get(messageID);
    if (!message || !view) return;
    const role = message.info.role || "unknown";
    view.el.dataset.role = role;
    view.el.className = `msg msg-${role}`;
    view.el.setAttribute("aria-label", role === "user" ? "You" : "Assistant");
    if (message.local) view.el.dataset.local = message.local.state;
    else delete view.el.dataset.local;
    this.renderFooter(view, message);

    const partEls = message.order.map((partID) => {
      const part = message.parts.get(partID);
      let partView = view.partViews.get(partID);
      // Role decides markdown vs. plain text: a placeholder that turns out a user message rebuilds.
      if (partView && (partView.type !== part.type || partView.role !== role)) {
        this.forgetPart(partID);
        partView = null;
      }
      if (!partView) {
        partView = new PartView(part, role);
        view.partViews.set(partID, partView);
        this.queue.set(partID, messageID);
      }
      return partView.el;
    });
    const present = new Set(message.order);
    for (const partID of view.partViews.keys()) {
      if (!present.has(partID)) {
        this.forgetPart(partID);
        view.partViews.delete(partID);
      }
    }
    placeChildren(view.parts, partEls);
  }

  renderFooter(view, message) {
    const footer = view.footer;
    const items = [];
    const local = message.local;
    if (local) {
      const label = { sending: "sending…", queued: "queued", failed: "not sent" }[local.state] || local.state;
      items.push(h("span", { class: `local local-${local.state}`, text: label }));
      if (local.error) items.push(h("span", { class: "error", text: truncate(String(local.error), 500) }));
      const sessionID = message.info.sessionID || this.session;
      const button = (text, testid, click) =>
        h("button", { class: "small", text, data: { testid }, attrs: { type: "button" }, on: { click } });
      if (local.state === "failed") {
        items.push(button("Retry", "retry-send", () => this.actions.retry(sessionID, message.info.id)));
      }
      // Waiting in the bridge's outbox: it can still be changed or withdrawn.
      if (local.state === "queued" && !view.editor) {
        items.push(button("Edit", "edit-queued", () => this.startEdit(view, message)));
        items.push(button("Cancel", "cancel-queued", (event) => {
          event.currentTarget.disabled = true; // the message goes on its remove patch
          this.actions.cancel(message.info.id);
        }));
      }
    }
    const error = message.info.error;
    if (error) {
      const aborted = error.name === "MessageAbortedError";
      items.push(h("span", { class: aborted ? "muted" : "error", text: aborted ? "Stopped" : errorText(error) }));
    }
    footer.replaceChildren(...items);
    footer.hidden = items.length === 0;
  }

  /** Edit a queued message in place of its text, until saved or dropped. */
  startEdit(view, message) {
    const messageID = message.info.id;
    const part = message.order.map((id) => message.parts.get(id)).find((p) => p.type === "text");
    const textarea = h("textarea", {
      class: "edit-text", data: { testid: "edit-text" },
      attrs: { rows: "3", "aria-label": "Edit the queued message" },
    });
    textarea.value = part?.text ?? "";
    const save = h("button", {
      class: "small primary", text: "Save", data: { testid: "edit-save" }, attrs: { type: "submit" },
    });
    const drop = h("button", {
      class: "small", text: "Keep as it was", data: { testid: "edit-drop" }, attrs: { type: "button" },
    });
    const form = h("form", { class: "msg-editor", data: { testid: "editor" } },
      textarea, h("div", { class: "msg-editor-actions" }, save, drop));
    const close = () => {
      view.editor = null;
      form.remove();
      view.parts.hidden = false;
      this.renderMessage(this.session, messageID);
    };
    drop.addEventListener("click", close);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!textarea.value.trim()) return;
      save.disabled = drop.disabled = true;
      // The new text arrives as patches; a message that went out meanwhile stays as sent.
      await this.actions.edit(messageID, textarea.value);
      close();
    });
    view.editor = form;
    view.parts.hidden = true;
    view.el.insertBefore(form, view.footer);
    this.renderFooter(view, message);
    textarea.focus();
  }

  forgetPart(partID) {
    clearTimeout(this.timers.get(partID));
    this.timers.delete(partID);
    this.queue.delete(partID);
  }

  /** Render queued part contents, newest first, until the frame's budget is spent. */
  drainQueue(started) {
    if (this.queue.size === 0) return;
    // Ids ascend with time: the newest part (the one at the bottom, in view) goes first.
    const key = ([partID, messageID]) => `${messageID} ${partID}`;
    const entries = [...this.queue].sort((a, b) => (key(a) < key(b) ? 1 : -1));
    for (const [partID, messageID] of entries) {
      const now = performance.now();
      if (now - started > FRAME_BUDGET_MS) break;
      this.queue.delete(partID);
      const part = this.store.message(this.session, messageID)?.parts.get(partID);
      const partView = this.messageViews.get(messageID)?.partViews.get(partID);
      if (!part || !partView) continue;
      const later = partView.update(part, now);
      if (later && !this.timers.has(partID)) {
        this.timers.set(partID, setTimeout(() => {
          this.timers.delete(partID);
          this.queue.set(partID, messageID);
          this.schedule();
        }, later - now));
      }
    }
    if (this.queue.size > 0) this.schedule();
  }

  renderOlder() {
    const state = this.session === null ? null : this.older.get(this.session);
    const button = this.els["load-older"];
    const status = this.els["older-status"];
    const visible = this.session !== null;
    button.hidden = !visible || Boolean(state?.exhausted) || Boolean(state?.loading);
    status.hidden = !visible || !(state?.loading || state?.exhausted || state?.error);
    const text = state?.loading ? "Loading older messages…"
      : state?.error ? `Could not load older messages: ${state.error}`
      : state?.exhausted ? "Beginning of the conversation" : "";
    setText(status, text);
  }
}
