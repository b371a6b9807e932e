"""The patch ring and the coalescing of text appends."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openchamber.hub import Hub, coalesce

Patch = dict[str, Any]


def append(part: str, text: str, field: str = "text") -> Patch:
    return {"op": "part.text.append", "partID": part, "field": field, "text": text}


def upsert(part: str, text: str) -> Patch:
    return {"op": "part.upsert", "part": {"id": part, "text": text}}


def test_since_returns_what_came_after_the_cursor() -> None:
    hub = Hub(capacity=4, first_cursor=100)
    assert hub.since(100) == []
    assert hub.publish([upsert("a", ""), append("a", "x")]) == 102
    assert hub.since(100) == [upsert("a", ""), append("a", "x")]
    assert hub.since(101) == [append("a", "x")]
    assert hub.since(102) == []


def test_a_cursor_that_left_the_ring_or_was_never_handed_out_needs_a_snapshot() -> None:
    hub = Hub(capacity=2, first_cursor=100)
    hub.publish([append("a", str(i)) for i in range(5)])  # keeps cursors 104, 105
    assert hub.since(103) == [append("a", "3"), append("a", "4")]
    assert hub.since(102) is None  # patch 103 is gone
    assert hub.since(99) is None  # from before this launch
    assert hub.since(106) is None  # from another launch


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Hub(capacity=0)


def test_coalesce_joins_appends_of_a_part_across_other_parts_appends() -> None:
    patches = [append("a", "1"), append("b", "x"), append("a", "2"), append("a", "2", "other")]
    assert coalesce(patches) == [append("a", "12"), append("b", "x"), append("a", "2", "other")]
    assert patches[0] == append("a", "1")  # the ring's patches are left alone


def test_coalesce_does_not_join_across_other_kinds_of_patch() -> None:
    patches = [append("a", "1"), upsert("a", "new"), append("a", "2")]
    assert coalesce(patches) == patches


def apply(state: dict[tuple[str, str], str], patches: list[Patch]) -> dict[tuple[str, str], str]:
    """A view's text state: what it shows after the patches."""
    state = dict(state)
    for patch in patches:
        if patch["op"] == "part.upsert":
            state[(patch["part"]["id"], "text")] = patch["part"]["text"]
        else:
            key = (patch["partID"], patch["field"])
            state[key] = state.get(key, "") + patch["text"]
    return state


patch_lists = st.lists(
    st.one_of(
        st.builds(
            append, st.sampled_from("abc"), st.text(max_size=3), st.sampled_from(["text", "x"])
        ),
        st.builds(upsert, st.sampled_from("abc"), st.text(max_size=3)),
    ),
    max_size=40,
)


@given(patch_lists)
def test_coalesced_patches_leave_a_view_where_the_originals_do(patches: list[Patch]) -> None:
    joined = coalesce(patches)
    assert apply({}, joined) == apply({}, patches)
    assert len(joined) <= len(patches)


@given(patch_lists, st.integers(min_value=1, max_value=10), st.data())
def test_any_cursor_in_the_ring_replays_exactly_the_rest(
    patches: list[Patch], capacity: int, data: st.DataObject
) -> None:
    hub = Hub(capacity=capacity, first_cursor=7)
    hub.publish(patches)
    cursor = data.draw(st.integers(min_value=0, max_value=7 + len(patches) + 2))
    replay = hub.since(cursor)
    kept = 7 <= cursor <= 7 + len(patches) and 7 + len(patches) - cursor <= capacity
    if kept:
        assert replay == patches[cursor - 7 :]
    else:
        assert replay is None
