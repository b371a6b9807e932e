// Markdown for model output, which is hostile: the renderer builds DOM nodes directly and puts
// every piece of text in as a text node, so no model text is ever parsed as HTML. Supported:
// ATX/setext headings, paragraphs, emphasis, strikethrough, inline code, fenced code (with
// highlighting), lists, blockquotes, tables, rules, links (http/https/mailto only).
//
// `MarkdownView` re-renders a growing text cheaply: the text is split into top-level blocks
// and only blocks whose source changed (in a stream: the last one or two) are rebuilt, and a
// rebuilt block is merged into the one on screen, which keeps every node that did not change.
// Text is put in as pieces of at most TEXT_PIECE characters: the browser shapes text per
// node, so a paragraph that grows by a delta costs the layout of its last piece, not of the
// whole paragraph (a 200 KB reply is otherwise re-shaped on every frame). Blocks sit in
// chunks of 32 (the browser then walks 50 chunks, not 1,500 blocks, per change), and a long
// text that lands at once goes on screen a slice per frame.

import { highlightInto, languageOf } from "./highlight.js";

const FENCE = /^ {0,3}(`{3,}|~{3,})[ \t]*([^`\s]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])([ \t]+|$)(.*)$/;
const SETEXT = /^ {0,3}(=+|-+)[ \t]*$/;
const TABLE_RULE = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;
const BLANK = /^[ \t]*$/;

const indentOf = (line) => line.length - line.trimStart().length;

/** Does `line` start a block that interrupts a paragraph? */
function interrupts(line) {
  if (FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line)) return true;
  const item = ITEM.exec(line);
  // An ordered list interrupts a paragraph only when it starts at 1 (CommonMark), and an
  // empty item never does: "2024. was a year" stays a paragraph.
  return item !== null && item[4] !== "" && (!/\d/.test(item[2]) || parseInt(item[2], 10) === 1);
}

function splitRow(line) {
  let row = line.trim();
  if (row.startsWith("|")) row = row.slice(1);
  if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
  return row.split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, "|"));
}

/** Top-level blocks of `text`; each has `src` (its lines), used to reuse rendered nodes. */
export function parseBlocks(text) {
  const lines = text.split(/\r?\n/);
  const blocks = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const start = i;
    if (BLANK.test(line)) {
      i += 1;
      continue;
    }
    let block;
    const fence = FENCE.exec(line);
    const heading = HEADING.exec(line);
    if (fence) {
      const marker = fence[1];
      const close = new RegExp(`^ {0,3}${marker[0] === "`" ? "`" : "~"}{${marker.length},}[ \\t]*$`);
      const indent = indentOf(line);
      const code = [];
      i += 1;
      while (i < lines.length && !close.test(lines[i])) {
        code.push(lines[i].slice(Math.min(indent, indentOf(lines[i]))));
        i += 1;
      }
      const closed = i < lines.length;
      if (closed) i += 1;
      block = { type: "code", lang: fence[2], code: code.join("\n"), closed };
    } else if (heading) {
      block = { type: "heading", level: heading[1].length, text: heading[2] || "" };
      i += 1;
    } else if (RULE.test(line)) {
      block = { type: "rule" };
      i += 1;
    } else if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && !BLANK.test(lines[i])) {
        const quoted = QUOTE.exec(lines[i]);
        if (!quoted && interrupts(lines[i])) break;
        inner.push(quoted ? quoted[1] : lines[i]); // unquoted lines continue lazily
        i += 1;
      }
      block = { type: "quote", children: parseBlocks(inner.join("\n")) };
    } else if (ITEM.test(line)) {
      [block, i] = parseList(lines, i);
    } else if (line.includes("|") && i + 1 < lines.length && TABLE_RULE.test(lines[i + 1])
        && lines[i + 1].includes("-") && (lines[i + 1].includes("|") || line.trim().startsWith("|"))) {
      const head = splitRow(line);
      const align = splitRow(lines[i + 1]).map((cell) =>
        cell.endsWith(":") ? (cell.startsWith(":") ? "center" : "right") : cell.startsWith(":") ? "left" : "");
      const rows = [];
      i += 2;
      while (i < lines.length && !BLANK.test(lines[i]) && lines[i].includes("|")) {
        rows.push(splitRow(lines[i]));
        i += 1;
      }
      block = { type: "table", head, align, rows };
    } else {
      const text = [line];
      i += 1;
      while (i < lines.length && !BLANK.test(lines[i]) && !interrupts(lines[i])) {
        const setext = SETEXT.exec(lines[i]);
        if (setext) {
          i += 1;
          block = { type: "heading", level: setext[1][0] === "=" ? 1 : 2, text: text.join("\n") };
          break;
        }
        text.push(lines[i]);
        i += 1;
      }
      block ??= { type: "paragraph", text: text.join("\n") };
    }
    block.src = lines.slice(start, i).join("\n");
    blocks.push(block);
  }
  return blocks;
}

/** A list starting at `lines[i]`; returns [block, index after it]. */
function parseList(lines, i) {
  const first = ITEM.exec(lines[i]);
  const ordered = /\d/.test(first[2]);
  const delimiter = first[2].slice(-1);
  const items = [];
  let loose = false;
  let blankBefore = false;
  while (i < lines.length) {
    const item = ITEM.exec(lines[i]);
    const sameKind = item && /\d/.test(item[2]) === ordered && item[2].slice(-1) === delimiter;
    if (!sameKind || item[1].length >= 4) break;
    if (blankBefore) loose = true;
    // Content lines are those indented past the marker (capped, like CommonMark's rule).
    const gap = item[4] === "" ? 1 : Math.min(item[3].length, 4);
    const contentIndent = item[1].length + item[2].length + gap;
    const content = [item[4]];
    i += 1;
    blankBefore = false;
    while (i < lines.length) {
      const line = lines[i];
      if (BLANK.test(line)) {
        blankBefore = true;
        content.push("");
        i += 1;
        continue;
      }
      if (indentOf(line) >= contentIndent) {
        if (blankBefore) loose = true; // blocks of one item apart: a loose list
        content.push(line.slice(contentIndent));
      } else if (!blankBefore && !ITEM.test(line) && !interrupts(line)) {
        content.push(line.trimStart()); // a lazy continuation of the item's paragraph
      } else {
        break;
      }
      blankBefore = false;
      i += 1;
    }
    while (content.length > 1 && content[content.length - 1] === "") content.pop();
    items.push(parseBlocks(content.join("\n")));
    // A blank line ends the list unless another item (or its content) follows.
    if (blankBefore && !(i < lines.length && ITEM.test(lines[i]))) break;
  }
  // Trailing blank lines belong after the list, not in it.
  while (i > 0 && BLANK.test(lines[i - 1])) i -= 1;
  const start = ordered ? parseInt(first[2], 10) : 1;
  return [{ type: "list", ordered, start, loose, items }, i];
}

// ------------------------------------------------------------------ inline

const PUNCTUATION = /[!-/:-@[-`{-~]/;
const WORD_CHAR = /[\p{L}\p{N}]/u;
const SPACE = /\s/;
const BARE_URL = /^(?:https?:\/\/|www\.)[^\s<>]*[^\s<>.,:;"')\]!?*_~]/;

/** The href for a link target, or null unless it is http(s) or mailto. */
export function safeHref(raw) {
  // Control characters and spaces inside a scheme are how "java\tscript:" sneaks through.
  const target = raw.trim().replace(/[\u0000-\u001f\u007f]/g, "");
  if (!/^(?:https?:\/\/|mailto:)/i.test(target)) return null;
  try {
    const url = new URL(target);
    return ["http:", "https:", "mailto:"].includes(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

function link(href, children) {
  const a = document.createElement("a");
  a.href = href;
  a.rel = "noopener noreferrer";
  a.target = "_blank";
  a.append(...children);
  return a;
}

function element(tag, children) {
  const el = document.createElement(tag);
  el.append(...children);
  return el;
}

/**
 * Inline content of `text` as nodes. Closing delimiters are searched with a memo per
 * delimiter: the first valid closer at or after a position depends only on that position, so
 * a line full of unmatched `*` costs linear time, not quadratic (model output is hostile).
 */
export function renderInline(text) {
  const memo = new Map();
  const closer = (delim, from, valid) => {
    const known = memo.get(delim);
    if (known && known.from <= from && (known.at === -1 || known.at >= from)) return known.at;
    let at = text.indexOf(delim, from);
    while (at !== -1 && !valid(at)) at = text.indexOf(delim, at + 1);
    memo.set(delim, { from, at });
    return at;
  };
  return inlineNodes(text, 0, text.length, { closer, brackets: matchBrackets(text) });
}

/** Position of the `]` that closes each `[` (one pass with a stack, so linear time). */
function matchBrackets(text) {
  const pairs = new Map();
  const open = [];
  for (let i = 0; i < text.length; i += 1) {
    const ch = text[i];
    if (ch === "\\") i += 1;
    else if (ch === "[") open.push(i);
    else if (ch === "]" && open.length) pairs.set(open.pop(), i);
  }
  return pairs;
}

const TEXT_PIECE = 1024;

function inlineNodes(text, from, to, ctx) {
  const out = [];
  let plain = "";
  const flush = () => {
    for (let at = 0; at < plain.length; at += TEXT_PIECE) {
      out.push(document.createTextNode(plain.slice(at, at + TEXT_PIECE)));
    }
    plain = "";
  };
  let i = from;
  while (i < to) {
    const ch = text[i];
    if (ch === "\\" && i + 1 < to && PUNCTUATION.test(text[i + 1])) {
      plain += text[i + 1];
      i += 2;
      continue;
    }
    if (ch === "\\" && text[i + 1] === "\n") {
      flush();
      out.push(document.createElement("br"));
      i += 2;
      continue;
    }
    if (ch === "\n") {
      plain = plain.replace(/ +$/, "");
      flush();
      out.push(document.createElement("br")); // chat text: a newline is a line break
      i += 1;
      continue;
    }
    if (ch === "`") {
      let run = 1;
      while (text[i + run] === "`") run += 1;
      const delim = "`".repeat(run);
      const end = ctx.closer(delim, i + run, (at) => text[at - 1] !== "`" && text[at + run] !== "`");
      if (end !== -1 && end + run <= to) {
        let code = text.slice(i + run, end).replace(/\n/g, " ");
        if (/^ .*[^ ].* $/.test(code)) code = code.slice(1, -1);
        flush();
        out.push(element("code", [code]));
        i = end + run;
      } else {
        plain += delim;
        i += run;
      }
      continue;
    }
    if (ch === "*" || ch === "_" || ch === "~") {
      const double = text[i + 1] === ch;
      if (ch === "~" && !double) {
        plain += ch;
        i += 1;
        continue;
      }
      const size = double ? 2 : 1;
      const delim = ch.repeat(size);
      const next = text[i + size];
      const opens = next !== undefined && !SPACE.test(next) && next !== ch
        && !(ch === "_" && i > 0 && WORD_CHAR.test(text[i - 1]));
      const end = opens
        ? ctx.closer(delim, i + size + 1, (at) =>
            !SPACE.test(text[at - 1]) && text[at - 1] !== ch && text[at + size] !== ch
            && !(ch === "_" && WORD_CHAR.test(text[at + size] || "")))
        : -1;
      if (end !== -1 && end + size <= to) {
        flush();
        const tag = ch === "~" ? "del" : double ? "strong" : "em";
        out.push(element(tag, inlineNodes(text, i + size, end, ctx)));
        i = end + size;
      } else {
        plain += delim;
        i += size;
      }
      continue;
    }
    if (ch === "[" || (ch === "!" && text[i + 1] === "[")) {
      const parsed = parseLink(text, ch === "!" ? i + 1 : i, to, ctx.brackets);
      if (parsed) {
        flush();
        const href = safeHref(parsed.url);
        const label = ch === "!"
          ? [document.createTextNode(text.slice(parsed.labelStart, parsed.labelEnd) || parsed.url)]
          : inlineNodes(text, parsed.labelStart, parsed.labelEnd, ctx);
        // Images are shown as links: the page loads nothing from the network by itself.
        out.push(...(href ? [link(href, label)] : label));
        i = parsed.end;
        continue;
      }
    }
    if (ch === "<") {
      const auto = /^<((?:https?:\/\/|mailto:)[^\s<>]*)>/i.exec(text.slice(i, Math.min(to, i + 2048)));
      const href = auto && safeHref(auto[1]);
      if (href) {
        flush();
        out.push(link(href, [auto[1]]));
        i += auto[0].length;
        continue;
      }
    }
    if ((ch === "h" || ch === "w") && (i === from || !WORD_CHAR.test(text[i - 1]))) {
      const bare = BARE_URL.exec(text.slice(i, Math.min(to, i + 2048)));
      const href = bare && safeHref(bare[0].startsWith("www.") ? `https://${bare[0]}` : bare[0]);
      if (href) {
        flush();
        out.push(link(href, [bare[0]]));
        i += bare[0].length;
        continue;
      }
    }
    plain += ch;
    i += 1;
  }
  flush();
  return out;
}

const LINK_SEARCH = 2048; // link targets longer than this are not links

/** `[label](url "title")` at `i`: label and url bounds, or null. */
function parseLink(text, i, to, brackets) {
  const j = brackets.get(i);
  if (j === undefined || j >= to || text[j + 1] !== "(") return null;
  const target = /^\(\s*(<[^<>\n]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)/
    .exec(text.slice(j + 1, Math.min(to, j + 1 + LINK_SEARCH)));
  if (!target) return null;
  const url = target[1].startsWith("<") ? target[1].slice(1, -1) : target[1];
  return { labelStart: i + 1, labelEnd: j, url, end: j + 1 + target[0].length };
}

// ------------------------------------------------------------------ blocks to DOM

function renderBlock(block, tight = false) {
  switch (block.type) {
    case "paragraph":
      return tight ? renderInline(block.text) : [element("p", renderInline(block.text))];
    case "heading":
      return [element(`h${block.level}`, renderInline(block.text))];
    case "rule":
      return [document.createElement("hr")];
    case "quote":
      return [element("blockquote", block.children.flatMap((child) => renderBlock(child)))];
    case "code":
      return [renderCode(block)];
    case "list": {
      const list = document.createElement(block.ordered ? "ol" : "ul");
      if (block.ordered && block.start !== 1) list.start = block.start;
      for (const item of block.items) {
        list.append(element("li", item.flatMap((child) => renderBlock(child, !block.loose))));
      }
      return [list];
    }
    case "table": {
      const row = (cells, tag) => element("tr", cells.map((cell, n) => {
        const el = element(tag, renderInline(cell));
        if (block.align[n]) el.className = `align-${block.align[n]}`;
        return el;
      }));
      const table = element("table", [
        element("thead", [row(block.head, "th")]),
        element("tbody", block.rows.map((cells) => row(cells, "td"))),
      ]);
      const wrap = element("div", [table]); // scrolls sideways on a narrow window
      wrap.className = "table-wrap";
      return [wrap];
    }
    default:
      return [];
  }
}

function renderCode(block) {
  const pre = document.createElement("pre");
  const code = document.createElement("code");
  const language = languageOf(block.lang);
  if (block.lang) {
    // The class carries only a known name or a sanitized word, never raw model text.
    code.className = `language-${language || block.lang.replace(/[^\w+-]/g, "").slice(0, 32)}`;
    pre.dataset.lang = block.lang.slice(0, 32);
  }
  highlightInto(code, block.code, block.lang);
  pre.append(code);
  return pre;
}

// Top-level blocks go in chunks of CHUNK_BLOCKS, by block index (<div class="md-chunk">).
// The browser's style and layout walk all children of an element that changed: with a flat
// list, a change at the end of a 200 KB reply (1,500 blocks) costs a walk over all of them
// on every render; with chunks, over the chunks and the last chunk's blocks.
const CHUNK_BLOCKS = 32;

function chunk() {
  const el = element("div", []);
  el.className = "md-chunk";
  return el;
}

/** Render `text` into `container`, replacing its content, all at once. */
export function renderMarkdown(container, text) {
  container.replaceChildren();
  new MarkdownView(container).update(text);
}

/** A container that follows a growing markdown text, rebuilding only changed blocks. */
export class MarkdownView {
  constructor(container) {
    this.container = container;
    this.rendered = []; // [{src, nodes}] in document order
    this.chunks = []; // chunk k holds the nodes of blocks k * CHUNK_BLOCKS onwards
  }

  /** The chunk of the block at `index`, made (at the end) if need be. */
  chunkOf(index) {
    const k = Math.floor(index / CHUNK_BLOCKS);
    while (this.chunks.length <= k) {
      this.chunks.push(chunk());
      this.container.append(this.chunks.at(-1));
    }
    return this.chunks[k];
  }

  /**
   * Show `text`; true once all of it is on screen. Blocks on screen that changed are
   * rebuilt at once; blocks past them are added until `budgetMs` of building them is spent
   * (at least one), the rest by the next calls: a long text that arrives at once (a burst,
   * a finished reply opened) is laid out over several frames instead of in one long task.
   */
  update(text, budgetMs = Infinity) {
    const blocks = parseBlocks(text);
    const started = performance.now();
    let same = 0;
    while (same < blocks.length && same < this.rendered.length
        && blocks[same].src === this.rendered[same].src) {
      same += 1;
    }
    const onScreen = this.rendered.length;
    const stale = this.rendered.splice(same);
    let done = true;
    for (const [n, block] of blocks.slice(same).entries()) {
      if (same + n >= onScreen && n > 0 && performance.now() - started > budgetMs) {
        done = false;
        break;
      }
      const nodes = renderBlock(block);
      // In a stream the first block that changed is usually the last one, grown: it is
      // merged into the one on screen.
      const old = n === 0 ? stale[0] : undefined;
      if (old && old.nodes.length === nodes.length
          && nodes.every((node, k) => mergeable(old.nodes[k], node))) {
        nodes.forEach((node, k) => merge(old.nodes[k], node));
        stale.shift();
        this.rendered.push({ src: block.src, nodes: old.nodes });
      } else {
        this.chunkOf(same + n).append(...nodes);
        this.rendered.push({ src: block.src, nodes });
      }
    }
    for (const gone of stale) {
      for (const node of gone.nodes) node.remove();
    }
    const used = Math.ceil(this.rendered.length / CHUNK_BLOCKS);
    for (const empty of this.chunks.splice(used)) empty.remove();
    return done;
  }
}

/** Can `fresh` be merged into `old`: the same element (tag and attributes), or text? */
function mergeable(old, fresh) {
  if (old.nodeType !== fresh.nodeType || old.nodeName !== fresh.nodeName) return false;
  return old.nodeType === Node.TEXT_NODE
    || old.cloneNode(false).isEqualNode(fresh.cloneNode(false));
}

/** Make `old` equal to `fresh`, keeping old's nodes where they already are what fresh has. */
function merge(old, fresh) {
  if (old.nodeType === Node.TEXT_NODE) {
    if (old.data === fresh.data) return;
    if (fresh.data.startsWith(old.data)) old.appendData(fresh.data.slice(old.data.length));
    else old.data = fresh.data;
    return;
  }
  const olds = [...old.childNodes];
  const freshes = [...fresh.childNodes];
  let k = 0;
  while (k < olds.length && k < freshes.length && olds[k].isEqualNode(freshes[k])) k += 1;
  // The first difference is merged when it can be (the piece or element that grew).
  if (k < olds.length && k < freshes.length && mergeable(olds[k], freshes[k])) {
    merge(olds[k], freshes[k]);
    k += 1;
  }
  for (const gone of olds.slice(k)) gone.remove();
  old.append(...freshes.slice(k));
}
