"""`herald.reconcile.finished` on an audience send's events: finished only once every page up to
the number `audience_complete` gives has resolved and each page's deliveries ended."""

from __future__ import annotations

from typing import Any

import pytest

from herald.events import span_for
from herald.reconcile import finished
from herald.settings import Settings

TRACE = "t-1"


class _Rows:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self._rows = rows

    def query(self, query: str, job_config: Any) -> "_Rows":
        return self

    def result(self) -> list[dict[str, Any]]:
        return self._rows


def _page(number: int, spans: list[str], ended: list[str], last: bool = False) -> list[dict]:
    span = span_for(TRACE, "page", str(number))
    row = {"trace_id": TRACE, "span_id": span, "parent_span_id": None, "deliveries": None,
           "page": number}
    rows = [{**row, "status": "resolved", "deliveries": len(spans)}]
    rows += [{**row, "status": "sent", "span_id": s, "parent_span_id": span} for s in ended]
    if last:
        rows.append({**row, "status": "audience_complete"})
    return rows


@pytest.mark.parametrize("rows, done", [
    (_page(1, ["a"], ["a"]) + _page(2, ["b"], ["b"], last=True), True),
    (_page(1, ["a"], ["a"]) + _page(2, ["b"], [], last=True), False),       # page 2 not ended
    (_page(1, ["a"], ["a"]) + _page(2, ["b"], ["b"]), False),               # more pages to come
    (_page(2, ["b"], ["b"], last=True), False),                             # page 1 lost
    (_page(1, ["a"], ["a"]) + _page(2, [], [], last=True), True),           # an empty last page
])
def test_an_audience_send_is_finished_when_every_page_is(rows: list[dict], done: bool) -> None:
    assert (finished(_Rows(rows), Settings(project="p"), [TRACE]) == {TRACE}) is done
