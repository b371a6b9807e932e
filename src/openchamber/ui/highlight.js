// A small syntax highlighter: one combined regular expression per language finds comments,
// strings, numbers and words; tokens become <span class="tok-..."> elements whose text is set
// with text nodes, so code is never parsed as HTML.

// End of input even under the "m" flag (where $ means end of line): unclosed comments run on.
const END = String.raw`(?![\s\S])`;
const DQ = String.raw`"(?:[^"\\\n]|\\.)*"?`; // unterminated strings end at the line's end
const SQ = String.raw`'(?:[^'\\\n]|\\.)*'?`;
const BT = String.raw`\`(?:[^\`\\]|\\[\s\S])*\`?`;
const SLASH_COMMENTS = String.raw`\/\/[^\n]*|\/\*[\s\S]*?(?:\*\/|${END})`;
const HASH_COMMENT = String.raw`#[^\n]*`;
const NUMBER = String.raw`\b(?:0[xX][\da-fA-F_]+|0[bB][01_]+|\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?)\b`;
const WORD = String.raw`[A-Za-z_$][\w$]*`;

const words = (text) => new Set(text.split(/\s+/));

const JS_KEYWORDS = words(`break case catch class const continue debugger default delete do
  else export extends finally for function if import in instanceof let new return super switch
  this throw try typeof var void while with yield async await of static get set from as
  interface type enum implements private protected public readonly declare namespace abstract
  keyof satisfies`);
const C_KEYWORDS = words(`auto break case catch char class const continue default delete do
  double else enum extern final float for friend goto if implements import inline int
  interface long namespace new operator override package private protected public register
  return short signed sizeof static struct super switch template this throw throws try typedef
  union unsigned using virtual void volatile while bool boolean byte var val fun when object
  func let guard extension protocol internal string`);

/** Each language: ordered [class, pattern] token kinds, then word classes. */
const LANGUAGES = {
  js: {
    tokens: [["comment", SLASH_COMMENTS], ["string", `${DQ}|${SQ}|${BT}`], ["number", NUMBER]],
    keywords: JS_KEYWORDS,
    literals: words("true false null undefined NaN Infinity"),
  },
  python: {
    tokens: [
      ["comment", HASH_COMMENT],
      ["string", String.raw`[rbfuRBFU]{0,2}(?:"""[\s\S]*?(?:"""|${END})|'''[\s\S]*?(?:'''|${END})|${DQ}|${SQ})`],
      ["number", NUMBER],
      ["meta", String.raw`@[\w.]+`],
    ],
    keywords: words(`and as assert async await break class continue def del elif else except
      finally for from global if import in is lambda nonlocal not or pass raise return try while
      with yield match case self`),
    literals: words("True False None"),
  },
  shell: {
    tokens: [
      ["comment", String.raw`(?:^|(?<=\s))#[^\n]*`],
      ["string", `${DQ}|${SQ}`],
      ["literal", String.raw`\$\{[^}\n]*\}?|\$[\w@#?$!*-]`],
      ["number", NUMBER],
    ],
    keywords: words(`if then else elif fi for while until do done case esac function in return
      local export readonly declare set unset shift exit source alias cd echo sudo`),
    literals: words("true false"),
  },
  go: {
    tokens: [["comment", SLASH_COMMENTS], ["string", `${DQ}|${BT}|${SQ}`], ["number", NUMBER]],
    keywords: words(`break case chan const continue default defer else fallthrough for func go
      goto if import interface map package range return select struct switch type var`),
    literals: words("true false nil iota"),
  },
  rust: {
    tokens: [
      ["comment", SLASH_COMMENTS],
      ["string", DQ],
      ["number", NUMBER],
      ["meta", String.raw`#!?\[[^\]\n]*\]?|\b[a-z_]\w*!`],
    ],
    keywords: words(`as async await break const continue crate dyn else enum extern fn for if impl
      in let loop match mod move mut pub ref return self Self static struct super trait type
      unsafe use where while`),
    literals: words("true false None Some Ok Err"),
  },
  c: {
    tokens: [
      ["comment", SLASH_COMMENTS],
      ["string", `${DQ}|${SQ}`],
      ["number", NUMBER],
      ["meta", String.raw`^[ \t]*#[ \t]*\w+|@\w+`],
    ],
    keywords: C_KEYWORDS,
    literals: words("true false null nullptr NULL nil this self"),
  },
  json: {
    tokens: [["key", String.raw`${DQ}(?=\s*:)`], ["string", DQ], ["number", String.raw`-?${NUMBER}`]],
    keywords: new Set(),
    literals: words("true false null"),
  },
  yaml: {
    tokens: [
      ["comment", String.raw`(?:^|(?<=\s))#[^\n]*`],
      ["key", String.raw`^[ \t-]*[\w.\/-]+(?=[ \t]*:(?:\s|$))`],
      ["string", `${DQ}|${SQ}`],
      ["number", NUMBER],
    ],
    keywords: new Set(),
    literals: words("true false null yes no on off"),
  },
  css: {
    tokens: [
      ["comment", String.raw`\/\*[\s\S]*?(?:\*\/|${END})`],
      ["string", `${DQ}|${SQ}`],
      ["keyword", String.raw`@[\w-]+`],
      ["key", String.raw`[\w-]+(?=\s*:[^:{};]*;)`],
      ["number", String.raw`#[\da-fA-F]{3,8}\b|-?\b\d+(?:\.\d+)?(?:px|em|rem|%|vh|vw|s|ms|deg|fr)?`],
    ],
    keywords: new Set(),
    literals: words("important inherit initial unset none auto"),
  },
  html: {
    tokens: [
      ["comment", String.raw`<!--[\s\S]*?(?:-->|${END})`],
      ["keyword", String.raw`<\/?[\w:.-]+|\/?>`],
      ["key", String.raw`[\w:-]+(?==)`],
      ["string", `${DQ}|${SQ}`],
    ],
    keywords: new Set(),
    literals: new Set(),
    noWords: true,
  },
  sql: {
    tokens: [["comment", String.raw`--[^\n]*|\/\*[\s\S]*?(?:\*\/|${END})`], ["string", SQ], ["number", NUMBER]],
    keywords: words(`select from where insert into values update set delete create table drop
      alter join left right inner outer full cross on and or not is in as order by group having
      limit offset union all distinct primary key foreign references index view begin commit
      rollback case when then else end exists between like returning with default`),
    literals: words("null true false"),
    caseless: true,
  },
  diff: {
    tokens: [
      ["meta", String.raw`^(?:@@[^\n]*|diff [^\n]*|index [^\n]*|\+\+\+[^\n]*|---[^\n]*)`],
      ["inserted", String.raw`^\+[^\n]*`],
      ["deleted", String.raw`^-[^\n]*`],
    ],
    keywords: new Set(),
    literals: new Set(),
    noWords: true,
  },
};

const ALIASES = {
  javascript: "js", jsx: "js", ts: "js", typescript: "js", tsx: "js", mjs: "js", cjs: "js",
  py: "python", python3: "python", sh: "shell", bash: "shell", zsh: "shell", console: "shell",
  shellscript: "shell", golang: "go", rs: "rust", h: "c", cpp: "c", "c++": "c", cc: "c",
  hpp: "c", java: "c", cs: "c", csharp: "c", kotlin: "c", kt: "c", swift: "c", php: "c",
  jsonc: "json", json5: "json", yml: "yaml", toml: "yaml", ini: "yaml", scss: "css",
  less: "css", xml: "html", svg: "html", vue: "html", svelte: "html", patch: "diff",
  postgres: "sql", sqlite: "sql", mysql: "sql",
};

const compiled = new Map();

function compile(name) {
  const spec = LANGUAGES[name];
  const kinds = spec.tokens.map(([kind]) => kind);
  const sources = spec.tokens.map(([, source]) => `(${source})`);
  if (!spec.noWords) {
    kinds.push("word");
    sources.push(`(${WORD})`);
  }
  return { spec, kinds, regex: new RegExp(sources.join("|"), "gm") };
}

/** The canonical language name for a fence's info string, or null if unknown. */
export function languageOf(info) {
  const name = (info || "").toLowerCase();
  const canonical = ALIASES[name] || name;
  return Object.hasOwn(LANGUAGES, canonical) ? canonical : null;
}

function span(kind, text) {
  const el = document.createElement("span");
  el.className = `tok-${kind}`;
  el.textContent = text;
  return el;
}

/** Highlight `code` into `target` (a fresh element); plain text if the language is unknown. */
export function highlightInto(target, code, language) {
  const name = languageOf(language);
  if (!name) {
    target.textContent = code;
    return;
  }
  if (!compiled.has(name)) compiled.set(name, compile(name));
  const { spec, kinds, regex } = compiled.get(name);
  const fragment = document.createDocumentFragment();
  let plain = ""; // text between tokens, gathered into one text node
  let last = 0;
  regex.lastIndex = 0;
  for (let match = regex.exec(code); match; match = regex.exec(code)) {
    if (match[0] === "") {
      regex.lastIndex += 1; // lookbehind/anchor-only matches must not stall the loop
      continue;
    }
    plain += code.slice(last, match.index);
    last = regex.lastIndex;
    let kind = kinds[match.slice(1).findIndex((group) => group !== undefined)];
    if (kind === "word") {
      const word = spec.caseless ? match[0].toLowerCase() : match[0];
      if (spec.keywords.has(word)) kind = "keyword";
      else if (spec.literals.has(word)) kind = "literal";
      else if (code[last] === "(") kind = "function";
      else {
        plain += match[0];
        continue;
      }
    }
    if (plain) fragment.append(plain);
    plain = "";
    fragment.append(span(kind, match[0]));
  }
  plain += code.slice(last);
  if (plain) fragment.append(plain);
  target.replaceChildren(fragment);
}
