// The view's copy of the bridge's store, kept by applying snapshots and patches exactly as
// docs/BRIDGE.md says, plus a record of what changed so the renderer touches only that.
//
// Maps everywhere: ids come from the server and must never collide with object properties.

/** Index where `id` goes in the ascending array `order` (ids compare as strings). */
function bisect(order, id) {
  let lo = 0;
  let hi = order.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (order[mid] < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function insertSorted(order, id) {
  const at = bisect(order, id);
  if (order[at] !== id) order.splice(at, 0, id);
}

function removeSorted(order, id) {
  const at = bisect(order, id);
  if (order[at] === id) order.splice(at, 1);
}

/** What changed since the renderer last looked. */
export class Changes {
  constructor() {
    this.clear();
  }

  clear() {
    this.full = false; // a snapshot replaced everything
    this.sessions = false; // the session list or a session's status
    this.threads = new Set(); // sessionIDs whose message order changed
    this.messages = new Map(); // messageID -> sessionID: info, local state or part order
    this.parts = new Map(); // partID -> {sessionID, messageID}
    this.prompts = false; // permissions or questions
    this.connection = false;
    this.confirmed = false; // the server confirmed what the cache showed
    this.errors = false;
    this.finished = []; // sessionIDs that went from busy to idle (for notifications)
  }
}

export class Store {
  constructor() {
    this.changes = new Changes();
    this.reset();
  }

  reset() {
    this.sessions = new Map(); // sessionID -> info
    this.status = new Map(); // sessionID -> {type: idle|busy|retry, ...}
    this.errors = new Map(); // sessionID (or "") -> error of the last turn
    this.threads = new Map(); // sessionID -> {order: [messageID], messages: Map}
    this.permissions = new Map(); // requestID -> request (carries sessionID)
    this.questions = new Map();
    this.connection = { state: "connecting", hint: "", attempt: 0, delay: null, at: Date.now() };
    // False while what is shown came from the bridge's cache and the server has not yet
    // confirmed it (snapshot `confirmed`, then the `confirmed` patch).
    this.confirmed = true;
  }

  thread(sessionID) {
    let thread = this.threads.get(sessionID);
    if (!thread) {
      thread = { order: [], messages: new Map() };
      this.threads.set(sessionID, thread);
    }
    return thread;
  }

  message(sessionID, messageID) {
    return this.threads.get(sessionID)?.messages.get(messageID);
  }

  isBusy(sessionID) {
    const type = this.status.get(sessionID)?.type;
    return type === "busy" || type === "retry";
  }

  loadSnapshot(snapshot) {
    this.reset();
    for (const info of snapshot.sessionList || []) this.sessions.set(info.id, info);
    for (const [sessionID, status] of Object.entries(snapshot.sessionStatus || {})) {
      this.status.set(sessionID, status);
    }
    for (const [sessionID, messages] of Object.entries(snapshot.sessions || {})) {
      for (const entry of messages) this.putMessage(sessionID, entry);
    }
    for (const request of snapshot.permissions || []) this.permissions.set(request.id, request);
    for (const request of snapshot.questions || []) this.questions.set(request.id, request);
    if (snapshot.status) this.setConnection(snapshot.status);
    this.confirmed = snapshot.confirmed !== false;
    this.changes.full = true;
  }

  /** Insert or replace a whole message in REST shape: {info, parts, local?}. */
  putMessage(sessionID, entry) {
    const thread = this.thread(sessionID);
    const id = entry.info.id;
    const message = { info: entry.info, local: entry.local ?? null, parts: new Map(), order: [] };
    for (const part of entry.parts || []) {
      message.parts.set(part.id, part);
      insertSorted(message.order, part.id);
    }
    if (!thread.messages.has(id)) insertSorted(thread.order, id);
    thread.messages.set(id, message);
    this.changes.threads.add(sessionID);
    this.changes.messages.set(id, sessionID);
    for (const partID of message.order) this.changes.parts.set(partID, { sessionID, messageID: id });
  }

  setConnection(status) {
    this.connection = { ...status, at: Date.now() };
    this.changes.connection = true;
  }

  /** Apply patches in order; returns the parts whose text they touched (for tracing). */
  applyPatches(patches) {
    const touched = new Set();
    for (const patch of patches) {
      const partID = this.apply(patch);
      if (partID) touched.add(partID);
    }
    return touched;
  }

  apply(patch) {
    const c = this.changes;
    const sid = patch.sessionID;
    switch (patch.op) {
      case "session.upsert":
        this.sessions.set(sid, patch.info);
        c.sessions = true;
        return null;
      case "session.remove":
        this.sessions.delete(sid);
        this.status.delete(sid);
        this.threads.delete(sid);
        this.errors.delete(sid);
        for (const prompts of [this.permissions, this.questions]) {
          for (const [id, request] of prompts) if (request.sessionID === sid) prompts.delete(id);
        }
        c.sessions = c.prompts = c.errors = true;
        c.threads.add(sid);
        return null;
      case "session.status": {
        const before = this.status.get(sid)?.type;
        this.status.set(sid, patch.status);
        if (patch.status?.type === "idle" && (before === "busy" || before === "retry")) {
          c.finished.push(sid);
        }
        if (patch.status?.type === "busy" && this.errors.delete(sid)) c.errors = true;
        c.sessions = true;
        return null;
      }
      case "session.error":
        this.errors.set(sid ?? "", patch.error);
        c.errors = true;
        return null;
      case "message.upsert":
        return this.upsertMessage(sid, patch.info, patch.local ?? null);
      case "message.local": {
        const message = this.message(sid, patch.messageID);
        if (message) {
          message.local = patch.local;
          c.messages.set(patch.messageID, sid);
        }
        return null;
      }
      case "message.remove": {
        const thread = this.threads.get(sid);
        if (thread?.messages.delete(patch.messageID)) {
          removeSorted(thread.order, patch.messageID);
          c.threads.add(sid);
        }
        return null;
      }
      case "part.upsert":
        return this.upsertPart(sid, patch.messageID, patch.part);
      case "part.text.append":
        return this.appendText(patch);
      case "part.remove": {
        const message = this.message(sid, patch.messageID);
        if (message?.parts.delete(patch.partID)) {
          removeSorted(message.order, patch.partID);
          c.messages.set(patch.messageID, sid);
        }
        return null;
      }
      case "permission.upsert":
        this.permissions.set(patch.request.id, { sessionID: sid, ...patch.request });
        c.prompts = true;
        return null;
      case "question.upsert":
        this.questions.set(patch.request.id, { sessionID: sid, ...patch.request });
        c.prompts = true;
        return null;
      case "permission.remove":
        this.permissions.delete(patch.requestID);
        c.prompts = true;
        return null;
      case "question.remove":
        this.questions.delete(patch.requestID);
        c.prompts = true;
        return null;
      case "connection":
        this.setConnection(patch.status);
        return null;
      case "confirmed":
        this.confirmed = true;
        c.confirmed = true;
        return null;
      default:
        return null; // a newer bridge's op: nothing this view shows
    }
  }

  upsertMessage(sessionID, info, local) {
    const thread = this.thread(sessionID);
    const message = thread.messages.get(info.id);
    if (message) {
      message.info = info;
      message.local = local; // an upsert without `local` confirms an optimistic message
    } else {
      thread.messages.set(info.id, { info, local, parts: new Map(), order: [] });
      insertSorted(thread.order, info.id);
      this.changes.threads.add(sessionID);
    }
    this.changes.messages.set(info.id, sessionID);
    return null;
  }

  /** The message a part belongs to, made as a placeholder if the bridge skipped it. */
  ensureMessage(sessionID, messageID) {
    const existing = this.message(sessionID, messageID);
    if (existing) return existing;
    this.upsertMessage(sessionID, { id: messageID, sessionID }, null);
    return this.message(sessionID, messageID);
  }

  upsertPart(sessionID, messageID, part) {
    const message = this.ensureMessage(sessionID, messageID);
    if (!message.parts.has(part.id)) {
      insertSorted(message.order, part.id);
      this.changes.messages.set(messageID, sessionID);
    }
    message.parts.set(part.id, part);
    this.changes.parts.set(part.id, { sessionID, messageID });
    return part.id;
  }

  appendText(patch) {
    const { sessionID, messageID, partID, field, text } = patch;
    const message = this.ensureMessage(sessionID, messageID);
    let part = message.parts.get(partID);
    if (!part) {
      // The bridge always upserts a part before appending; keep the text even if it did not.
      part = { id: partID, sessionID, messageID, type: "text" };
      message.parts.set(partID, part);
      insertSorted(message.order, partID);
      this.changes.messages.set(messageID, sessionID);
    }
    part[field] = (typeof part[field] === "string" ? part[field] : "") + text;
    this.changes.parts.set(partID, { sessionID, messageID });
    return partID;
  }

  /** The state in the shape of GET /api/snapshot (a deep copy: callers cannot mutate it). */
  toJSON() {
    const messages = (thread) =>
      thread.order.map((id) => {
        const m = thread.messages.get(id);
        const entry = { info: m.info, parts: m.order.map((p) => m.parts.get(p)) };
        if (m.local) entry.local = m.local;
        return entry;
      });
    return structuredClone({
      status: this.connection,
      confirmed: this.confirmed,
      // fromEntries defines keys as data properties, so no id can reach a prototype.
      sessions: Object.fromEntries([...this.threads].map(([sid, t]) => [sid, messages(t)])),
      sessionList: [...this.sessions.values()],
      sessionStatus: Object.fromEntries(this.status),
      permissions: [...this.permissions.values()],
      questions: [...this.questions.values()],
    });
  }
}
