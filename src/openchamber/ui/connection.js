// The view's WebSocket to the bridge: keeps the cursor, reconnects with jittered backoff,
// and reconnects at once after a wake from sleep, when the page becomes visible, or when the
// network comes back. It never reloads the page: a reconnect with the cursor resumes.

const BASE_DELAY_MS = 250;
const MAX_DELAY_MS = 5000;
const OPEN_TIMEOUT_MS = 10000; // a handshake that hangs (e.g. right after a wake) is retried
const TICK_MS = 1000;
const WAKE_JUMP_MS = 10000; // a tick this late means the machine (or the tab) was asleep
const AUTH_CLOSE_CODES = new Set([1008, 4401, 4403]);

export class EventSocket {
  /**
   * @param {(frame: object) => void} onFrame  every decoded message, in order
   * @param {() => void} onState  the phase changed (for the connection badge)
   */
  constructor(onFrame, onState) {
    this.onFrame = onFrame;
    this.onState = onState;
    this.cursor = null; // number of the last patch applied; null until the first snapshot
    this.phase = "connecting"; // connecting | open | waiting | auth-failed
    this.retryAt = 0; // when waiting: the time of the next attempt
    this.authFailed = false;
    this.ws = null;
    this.attempt = 0;
    this.retryTimer = 0;
    this.lastTick = Date.now();
    this.sleptHidden = false;
  }

  start() {
    setInterval(() => this.tick(), TICK_MS);
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) return;
      if (this.sleptHidden || !this.isOpen()) this.reconnectNow("visible");
      this.sleptHidden = false;
    });
    window.addEventListener("online", () => {
      if (!this.isOpen()) this.reconnectNow("online");
    });
    this.connect();
  }

  isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  tick() {
    const now = Date.now();
    const jump = now - this.lastTick;
    this.lastTick = now;
    if (jump > WAKE_JUMP_MS) {
      // Hidden tabs get throttled timers too; there the visibilitychange decides.
      if (document.hidden) this.sleptHidden = true;
      else this.reconnectNow("wake");
    }
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = this.cursor === null ? "" : `?cursor=${this.cursor}`;
    return `${scheme}//${location.host}/api/events${query}`;
  }

  setPhase(phase) {
    this.phase = phase;
    this.onState();
  }

  connect() {
    clearTimeout(this.retryTimer);
    const ws = new WebSocket(this.url());
    this.ws = ws;
    let opened = false;
    this.setPhase("connecting");
    const openTimer = setTimeout(() => ws.close(), OPEN_TIMEOUT_MS);
    ws.onopen = () => {
      clearTimeout(openTimer);
      if (ws !== this.ws) return;
      opened = true;
      this.setPhase("open");
    };
    ws.onmessage = (event) => {
      if (ws !== this.ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return; // not ours to interpret; the next frame still carries the cursor
      }
      this.attempt = 0; // only a socket that delivers counts as a success
      this.authFailed = false;
      this.onFrame(frame);
      if (typeof frame.cursor === "number") this.cursor = frame.cursor;
    };
    ws.onclose = (event) => {
      clearTimeout(openTimer);
      if (ws !== this.ws) return;
      this.ws = null;
      if (AUTH_CLOSE_CODES.has(event.code)) this.authFailed = true;
      // A refused handshake gives no status to scripts; ask a plain route why.
      if (!opened && !this.authFailed) this.probeAuth();
      this.scheduleReconnect();
    };
  }

  async probeAuth() {
    try {
      const response = await fetch("/api/ids/message", { credentials: "same-origin" });
      this.authFailed = response.status === 401 || response.status === 403;
    } catch {
      this.authFailed = false; // the bridge is down, which is not an auth problem
    }
    if (this.phase === "waiting" || this.phase === "auth-failed") {
      this.setPhase(this.authFailed ? "auth-failed" : "waiting");
    }
  }

  scheduleReconnect() {
    const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** this.attempt);
    const delay = ceiling * (0.5 + Math.random() / 2);
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this.retryTimer = setTimeout(() => this.connect(), delay);
    this.setPhase(this.authFailed ? "auth-failed" : "waiting");
  }

  /** Drop the current socket (if any) and connect again now, with the cursor. */
  reconnectNow(reason) {
    if (localStorage.getItem("openchamber_stream_debug") === "1") {
      console.log(`[STREAM-TRACE] reconnect reason=${reason} cursor=${this.cursor}`);
    }
    clearTimeout(this.retryTimer);
    const old = this.ws;
    this.ws = null; // its late events are ignored: they belong to the old socket
    if (old) old.close();
    this.connect();
  }
}
