"""The audience query (`users.audience_page`) on the Firestore emulator: cursor paging in document
id order, bounded pages, and each filter a segment offers."""

from __future__ import annotations

import uuid

import pytest
from google.cloud import firestore

from herald import users
from herald.contracts import Audience, Segment


@pytest.fixture
def db(firestore_emulator: str) -> firestore.Client:
    return firestore.Client(project=f"users-{uuid.uuid4().hex[:8]}")


def _seed(db: firestore.Client, documents: dict[str, dict]) -> None:
    batch = db.batch()
    for user_id, document in documents.items():
        batch.set(users.user_ref(db, user_id), document)
    batch.commit()


def _all_pages(db: firestore.Client, audience: Audience, limit: int) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        read = users.audience_page(db, audience, cursor, limit)
        if read.last is None:
            return pages
        assert read.read <= limit
        pages.append(list(read.kept))
        cursor = read.last


def test_a_topic_is_read_page_by_page_in_id_order(db: firestore.Client) -> None:
    _seed(db, {f"u-{n:03d}": {users.TOPICS: ["news"] if n % 3 else ["sports"]} for n in range(30)})
    pages = _all_pages(db, Audience(topic="news"), limit=7)
    assert [len(page) for page in pages] == [7, 7, 6]
    assert sum(pages, []) == [f"u-{n:03d}" for n in range(30) if n % 3]


def test_a_segment_filters_locale_timezone_and_an_unswitched_category(db: firestore.Client) -> None:
    _seed(db, {
        "a": {users.LOCALE: "ko-KR", users.TIMEZONE: "Asia/Seoul"},
        "b": {users.LOCALE: "ko-KR", users.TIMEZONE: "Asia/Seoul",
              users.CATEGORIES: {"marketing": False}},
        "c": {users.LOCALE: "ko-KR", users.TIMEZONE: "Europe/Paris",
              users.CATEGORIES: {"marketing": True}},
        "d": {users.LOCALE: "en-US", users.TIMEZONE: "Asia/Seoul"},
    })
    assert sum(_all_pages(db, Audience(segment=Segment(locale="ko-KR")), 2), []) == ["a", "b", "c"]
    assert sum(_all_pages(db, Audience(segment=Segment(locale="ko-KR", timezone="Asia/Seoul")),
                          1), []) == ["a", "b"]
    # The category is applied to each page read: page 1 read a and b and kept a.
    assert _all_pages(db, Audience(segment=Segment(locale="ko-KR", category="marketing")), 2) == [
        ["a"], ["c"]]
