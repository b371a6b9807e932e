"""The patch log views follow: a bounded ring of the store's patches, numbered by cursor.

Pure: no I/O, no clock. The bridge publishes every patch here and each view reads what
came after its own cursor, so there is one shared buffer however many views there are
and however slow one is. A view that falls off the ring's end (slept too long, too slow)
is told so, and takes a snapshot instead of the patches it missed: it never silently
loses one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from itertools import islice

from openchamber.store import Patch

DEFAULT_CAPACITY = 8192


class Hub:
    """Numbered patches, the newest `capacity` of them kept.

    `first_cursor` is the cursor before the first patch. Give each launch one above any
    cursor an earlier launch can have handed out (e.g. milliseconds since the epoch
    times 1000): a view's cursor from before a restart is then older than the ring and the
    view gets a snapshot, never another launch's patches under its numbers.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY, first_cursor: int = 0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._ring: deque[Patch] = deque(maxlen=capacity)
        self.cursor = first_cursor  # the number of the newest patch

    def publish(self, patches: Iterable[Patch]) -> int:
        """Append patches; returns the new cursor."""
        for patch in patches:
            self._ring.append(patch)
            self.cursor += 1
        return self.cursor

    def since(self, cursor: int) -> list[Patch] | None:
        """The patches after `cursor`, oldest first; None if some are no longer kept (or
        the cursor is not one this hub handed out): the reader needs a snapshot."""
        oldest = self.cursor - len(self._ring)  # the cursor just before the oldest kept
        if not oldest <= cursor <= self.cursor:
            return None
        # From the newest end: skipping from the oldest would walk the whole ring each time.
        newest_first = islice(reversed(self._ring), self.cursor - cursor)
        return list(newest_first)[::-1]


def coalesce(patches: list[Patch]) -> list[Patch]:
    """The same changes in fewer patches: text appends to one part's field are joined.

    Appends to different parts commute, so an append joins the previous one of its part
    unless any other kind of patch came between them (an upsert or removal may depend on
    the order). The input patches are left as they are; joined ones are new objects.
    """
    out: list[Patch] = []
    pieces: dict[int, list[str]] = {}  # index in `out` of a joined append -> its texts
    open_appends: dict[tuple[str, str], int] = {}  # (partID, field) -> index in `out`
    for patch in patches:
        if patch["op"] != "part.text.append":
            open_appends.clear()
            out.append(patch)
            continue
        key = (patch["partID"], patch["field"])
        at = open_appends.get(key)
        if at is None:
            open_appends[key] = len(out)
            out.append(patch)
        else:
            pieces.setdefault(at, [out[at]["text"]]).append(patch["text"])
    for at, texts in pieces.items():  # joined once: a long run is not copied over and over
        out[at] = {**out[at], "text": "".join(texts)}
    return out
