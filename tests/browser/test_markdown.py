"""The UI's streaming markdown view in Chromium: fed a text delta by delta it ends with
exactly the DOM a fresh render of the whole text makes, and a growing paragraph keeps the
nodes already on screen (the browser then lays out only what grew)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openchamber.testing.model import Directives, reply_text

pytestmark = pytest.mark.browser

UI_DIR = Path(__file__).resolve().parents[2] / "src" / "openchamber" / "ui"

# Feeds `text` to a MarkdownView in deltas of `step` characters, then compares with a fresh
# render; also reports whether the first text node on screen survived the whole stream.
STREAM = """
async ([text, step]) => {
  const { MarkdownView, renderMarkdown } = await import("/markdown.js");
  const streamed = document.createElement("div");
  const view = new MarkdownView(streamed);
  let first = null;
  for (let end = step; end < text.length + step; end += step) {
    view.update(text.slice(0, end));
    first ??= streamed.querySelector("p")?.firstChild ?? null;
  }
  const fresh = document.createElement("div");
  renderMarkdown(fresh, text);
  return {
    equal: streamed.isEqualNode(fresh),
    text: streamed.textContent === fresh.textContent,
    kept: first !== null && streamed.contains(first),
    longest: Math.max(0, ...[...streamed.querySelectorAll("p")].flatMap(
      (p) => [...p.childNodes].map((n) => (n.nodeType === 3 ? n.data.length : 0)))),
  };
}
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page(chromium: Any) -> Iterator[Any]:
    handler = functools.partial(_Quiet, directory=str(UI_DIR))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        context = chromium.new_context()
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
        try:
            yield page
        finally:
            context.close()
            server.shutdown()


HOSTILE = (
    (
        "**bold that closes *late* and `code` and [a link](https://example.com) "
        "<img src=x onerror=alert(1)> ~~gone~~ "
    )
    * 40
    + "\n\n- one\n- two *still open\n\n```python\nx = 1\n"
    + "y = 2\n" * 300
    + "```\n"
)


@pytest.mark.parametrize(
    ("text", "step"),
    [
        (reply_text(Directives.parse("reply=markdown len=4000"), ""), 7),
        (reply_text(Directives.parse("reply=long len=6000"), ""), 13),
        (HOSTILE, 11),
        ("word " * 3000, 10),  # one 15 KB paragraph
    ],
    ids=["markdown", "mixed", "hostile", "long-paragraph"],
)
def test_streamed_markdown_ends_equal_to_a_fresh_render(page: Any, text: str, step: int) -> None:
    result = page.evaluate(STREAM, [text, step])
    assert result["equal"], "the streamed DOM differs from a fresh render"
    assert result["text"]


def test_a_growing_paragraph_keeps_its_nodes_in_small_pieces(page: Any) -> None:
    result = page.evaluate(STREAM, ["the quick brown fox " * 2000, 10])
    assert result["equal"]
    assert result["kept"], "the paragraph's first text node was replaced while it grew"
    assert 0 < result["longest"] <= 1024


# Shows `text` at once, then `edited` at once, with no time to spare per call: each call
# adds one new block (those on screen that changed are rebuilt in the same call), until done.
SLICED = """
async ([text, edited]) => {
  const { MarkdownView, parseBlocks, renderMarkdown } = await import("/markdown.js");
  const view = new MarkdownView(document.createElement("div"));
  const calls = (t) => {
    let n = 1;
    while (!view.update(t, -1)) n += 1;
    return n;
  };
  const fresh = (t) => {
    const el = document.createElement("div");
    renderMarkdown(el, t);
    return el;
  };
  const first = calls(text);
  const firstEqual = view.container.isEqualNode(fresh(text));
  const second = calls(edited);
  return {
    blocks: [parseBlocks(text).length, parseBlocks(edited).length],
    calls: [first, second],
    equal: [firstEqual, view.container.isEqualNode(fresh(edited))],
  };
}
"""


def test_a_long_text_given_at_once_goes_on_screen_a_slice_per_call(page: Any) -> None:
    text = reply_text(Directives.parse("reply=long len=20000"), "")
    # The opening rewritten (every block on screen is rebuilt) and one block added.
    edited = "A new opening. " + text + "\n\nOne more paragraph."
    result = page.evaluate(SLICED, [text, edited])
    blocks, calls = result["blocks"], result["calls"]
    assert blocks[0] > 100
    assert blocks[1] == blocks[0] + 1
    assert calls[0] == blocks[0]  # one block per call: none was laid out all at once
    # The blocks on screen were rebuilt in one call (never left stale), the new one after.
    assert calls[1] == 2
    assert result["equal"] == [True, True]
