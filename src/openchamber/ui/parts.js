// One part of a message on screen. A view is made once per part and updated in place, so an
// open <details>, a selection or the scroll position survive every update.

import { h, setText, truncate } from "./dom.js";
import { MarkdownView } from "./markdown.js";

// Bookkeeping parts with nothing to read; they keep an (empty, hidden) element for tests.
const HIDDEN_TYPES = new Set(["step-start", "step-finish", "snapshot", "patch"]);
const TOOL_TEXT_LIMIT = 100_000; // a tool's output can be megabytes; the UI shows the start
// A streaming part re-renders at most once per THROTTLE x its last render cost (building
// and laying out: a long paragraph costs more in layout than in script), so markdown never
// takes more than a fraction of the main thread however fast deltas come.
const THROTTLE = 4;
// Time a render may spend building new blocks (their layout costs about three times as
// much, on top); the rest comes in the next frames. A 200 KB reply that lands at once (a
// burst, a finished reply opened) then takes a few frames of ~10 ms instead of one long task.
const RENDER_SLICE_MS = 2;

function toolSubtitle(state) {
  if (state.title) return state.title;
  const input = state.input || {};
  for (const key of ["description", "command", "filePath", "path", "pattern", "url", "query"]) {
    if (typeof input[key] === "string") return input[key];
  }
  return "";
}

function pretty(value) {
  if (value === undefined || value === null || value === "") return "";
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

export class PartView {
  constructor(part, role) {
    this.id = part.id;
    this.type = part.type;
    this.role = role;
    this.renderedText = null; // the text last put on screen (text and reasoning parts)
    this.nextRenderAt = 0; // throttle for streaming markdown
    this.timer = 0;
    this.el = this.build(part);
  }

  build(part) {
    const data = { testid: "part", partId: part.id, partType: part.type };
    const markdown = this.role !== "user";
    switch (part.type) {
      case "text": {
        this.body = h("div", {
          class: markdown ? "md" : "plain",
          data: { testid: "part-text", textLength: "0" },
        });
        if (markdown) this.md = new MarkdownView(this.body);
        if (part.synthetic) {
          // Context the client attached (file contents and the like): there, not in the way.
          return h("details", { class: "part part-synthetic", data },
            h("summary", { text: "Attached context" }), this.body);
        }
        return h("div", { class: `part part-text${part.ignored ? " ignored" : ""}`, data }, this.body);
      }
      case "reasoning":
        this.body = h("div", { class: "md", data: { testid: "part-text", textLength: "0" } });
        this.md = new MarkdownView(this.body);
        this.status = h("span", { class: "part-status" });
        return h("details", { class: "part part-reasoning", data },
          h("summary", {}, h("span", { class: "part-label", text: "Thinking" }), this.status),
          this.body);
      case "tool":
        this.toolName = h("span", { class: "tool-name" });
        this.toolTitle = h("span", { class: "tool-title" });
        this.status = h("span", { class: "part-status" });
        this.body = h("div", { class: "tool-body" });
        this.el = h("details", { class: "part part-tool", data },
          h("summary", {}, this.toolName, this.toolTitle, this.status), this.body);
        // The body (input, possibly huge output) is built only while someone looks at it.
        this.el.addEventListener("toggle", () => {
          if (this.el.open && this.part) this.renderToolBody(this.part);
        });
        return this.el;
      default: {
        const el = h("div", { class: "part part-other", data });
        el.hidden = HIDDEN_TYPES.has(part.type);
        return el;
      }
    }
  }

  /** Bring the view up to date; returns the earliest time (ms) to come back, or 0. */
  update(part, now) {
    this.part = part;
    switch (this.type) {
      case "text":
        if (part.ignored) this.el.hidden = true;
        return this.updateText(part, now);
      case "reasoning": {
        const done = Boolean(part.time?.end);
        this.el.dataset.status = done ? "completed" : "running";
        setText(this.status, done ? "" : "thinking…");
        return this.updateText(part, now);
      }
      case "tool":
        this.updateTool(part);
        return 0;
      default:
        this.updateOther(part);
        return 0;
    }
  }

  updateText(part, now) {
    const text = typeof part.text === "string" ? part.text : "";
    if (text === this.renderedText) return 0;
    if (!this.md) {
      this.body.textContent = text; // user text is shown as typed
    } else {
      const streaming = !part.time?.end;
      const grows = this.renderedText !== null && text.startsWith(this.renderedText);
      if (streaming && grows && now < this.nextRenderAt) return this.nextRenderAt;
      const started = performance.now();
      const done = this.md.update(text, RENDER_SLICE_MS);
      if (streaming) void this.body.offsetHeight; // the layout this frame does anyway, timed
      this.nextRenderAt = now + (performance.now() - started) * THROTTLE;
      if (!done) {
        // Not all on screen yet: the rest goes next frame, whatever the text is by then.
        this.renderedText = null;
        return now + 1;
      }
    }
    this.renderedText = text;
    this.body.dataset.textLength = String(text.length);
    return 0;
  }

  updateTool(part) {
    const state = part.state || {};
    const status = state.status || "pending";
    this.el.dataset.status = status;
    setText(this.toolName, part.tool || "tool");
    setText(this.toolTitle, truncate(toolSubtitle(state), 200));
    setText(this.status, status);
    this.status.dataset.status = status;
    if (this.el.open) this.renderToolBody(part);
  }

  renderToolBody(part) {
    const state = part.state || {};
    const sections = [];
    const section = (label, value, cls) => {
      const text = pretty(value);
      if (!text) return;
      const shown = truncate(text, TOOL_TEXT_LIMIT);
      sections.push(h("div", { class: "tool-section" },
        h("div", { class: "tool-section-label", text: label }),
        h("pre", { class: cls || "", text: shown })));
    };
    section("Input", state.input);
    section("Output", state.output);
    section("Error", state.error, "error");
    this.body.replaceChildren(...sections);
  }

  updateOther(part) {
    if (this.el.hidden) return;
    let label;
    switch (part.type) {
      case "file":
        label = `📎 ${part.filename || part.url || "file"}${part.mime ? ` (${part.mime})` : ""}`;
        break;
      case "agent":
        label = `@${part.name || "agent"}`;
        break;
      case "subtask":
        label = `Subtask: ${part.description || part.prompt || ""}`;
        break;
      case "retry":
        label = `Retrying: ${part.error?.data?.message || part.error?.name || "error"}`;
        break;
      case "compaction":
        label = "Conversation compacted";
        break;
      default:
        label = `[${part.type}]`;
    }
    setText(this.el, truncate(label, 500));
  }
}
