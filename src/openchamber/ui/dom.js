// Tiny DOM helpers. Text always goes in through textContent / text nodes, never as HTML.

/**
 * h("button", {class: "x", text: "Go", data: {testid: "send"}, attrs: {"aria-label": "Go"},
 *   on: {click: fn}}, ...children)
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  if (props.class) el.className = props.class;
  if (props.text !== undefined) el.textContent = props.text;
  for (const [key, value] of Object.entries(props.data || {})) el.dataset[key] = value;
  for (const [key, value] of Object.entries(props.attrs || {})) el.setAttribute(key, value);
  for (const [event, handler] of Object.entries(props.on || {})) el.addEventListener(event, handler);
  el.append(...children.filter((child) => child !== null && child !== undefined));
  return el;
}

/** Make `parent`'s children exactly `nodes`, in order, moving only what is out of place. */
export function placeChildren(parent, nodes) {
  let cursor = parent.firstChild;
  for (const node of nodes) {
    if (node === cursor) cursor = cursor.nextSibling;
    else parent.insertBefore(node, cursor);
  }
  while (cursor) {
    const next = cursor.nextSibling;
    cursor.remove();
    cursor = next;
  }
}

/** Set text only when it differs (a write, even of the same text, costs a relayout). */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

export function truncate(text, limit) {
  return text.length > limit ? `${text.slice(0, limit)}…` : text;
}
