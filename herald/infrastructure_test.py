"""herald.infrastructure: what it writes, and that no collection with an expiry is left out."""

from __future__ import annotations

import ast
from pathlib import Path

from herald import infrastructure

REPO = Path(__file__).resolve().parents[1]


def test_write_files_writes_what_render_files_renders(tmp_path: Path) -> None:
    written = infrastructure.write_files(tmp_path)
    rendered = infrastructure.render_files()
    assert {path.relative_to(tmp_path) for path in written} == set(rendered)
    for relative, text in rendered.items():
        assert (tmp_path / relative).read_text() == text


def _collections_with_expiry() -> set[str]:
    """The collections (`COLLECTION`, or any `*_COLLECTION` constant) of every runtime module that
    writes a TTL field."""
    found = set()
    for path in [*REPO.glob("ingest_function/*.py"), *REPO.glob("pipelines/*.py"),
                 *REPO.glob("herald/*.py")]:
        source = path.read_text()
        if path.name.endswith("_test.py") or f'"{infrastructure.TTL_FIELD}"' not in source:
            continue
        for node in ast.parse(source).body:
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                    and any(getattr(t, "id", "").endswith("COLLECTION") for t in node.targets)):
                found.add(node.value.value)
    return found


def test_every_collection_that_expires_has_a_ttl_policy() -> None:
    ttl = infrastructure.names()["firestore"]["ttl"]
    assert _collections_with_expiry() == set(ttl) == {
        "idempotency", "outbox", "send_claims", "frequency", "notification_status",
        "delivery_stages", "audience_pages"}

