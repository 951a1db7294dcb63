"""Templates: parsing, the locale fallback chain, sandboxed rendering, and the Firestore store (on
the real emulator)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from google.cloud import firestore

from herald.contracts import ContractError, parse_request
from herald.contracts_test import DESIGN_BODY
from herald.templates import (Template, TemplateError, TemplateStore, check_request,
                              fallback_chain, load_directory, parse_translation)

KO = parse_translation({"title": "주문 {{ orderId }}", "content": "{{ name }}님, 배송이 시작되었습니다"})
EN = parse_translation({
    "title": "Order {{ orderId }}", "content": "{{ name }}, your order shipped",
    "email_subject": "Your order {{ orderId }} shipped",
    "email_html": "<p>Hello {{ name }}</p>", "data": {"order": "{{ orderId }}"}})
TEMPLATE = Template("order_shipped", "en", {"en": EN, "ko": KO})
VARIABLES = {"orderId": "A-17", "name": "<b>Ana</b>"}


@pytest.mark.parametrize("locale, chain", [
    ("ko-KR", ["ko-KR", "ko", "en"]),
    ("zh-Hant-TW", ["zh-Hant-TW", "zh-Hant", "zh", "en"]),
    ("en", ["en"]),
    (None, ["en"]),
])
def test_fallback_chain(locale, chain) -> None:
    assert fallback_chain(locale, "en") == chain


@pytest.mark.parametrize("locale, used, title", [
    ("ko-KR", "ko", "주문 A-17"),
    ("KO", "ko", "주문 A-17"),
    ("de-DE", "en", "Order A-17"),
    (None, "en", "Order A-17"),
])
def test_the_recipients_locale_picks_the_translation(locale, used, title) -> None:
    rendered = TEMPLATE.render(locale, VARIABLES)
    assert (rendered.locale, rendered.title) == (used, title)


def test_email_html_is_escaped_and_the_other_texts_are_not() -> None:
    rendered = TEMPLATE.render("en", VARIABLES)
    assert rendered.email_html == "<p>Hello &lt;b&gt;Ana&lt;/b&gt;</p>"
    assert rendered.content == "<b>Ana</b>, your order shipped"
    assert rendered.email_subject == "Your order A-17 shipped"
    assert rendered.data == {"order": "A-17"}
    assert TEMPLATE.render("ko", VARIABLES).email_subject == "주문 A-17"  # defaults to the title


@pytest.mark.parametrize("source", [
    "{{ missing }}",
    "{{ orderId.__class__.__mro__ }}",               # the sandbox refuses Python internals
    "{{ ''.__class__.__subclasses__() }}",
    "{{ orderId | int + [] }}",
])
def test_render_errors_are_template_errors(source) -> None:
    template = Template("t", "en", {"en": parse_translation({"title": source, "content": "x"})})
    with pytest.raises(TemplateError, match="title"):
        template.render("en", VARIABLES)


@pytest.mark.parametrize("body, field", [
    ({"content": "x"}, "title"),
    ({"title": "{{ unclosed", "content": "x"}, "title"),
    ({"title": "t", "content": "x", "data": {"k": "{% if %}"}}, "data.k"),
    ({"title": "t", "content": "x", "data": {"k": 1}}, "data"),
    ({"title": "t", "content": "x", "body": "?"}, "body"),
])
def test_bad_translations_name_the_field(body, field) -> None:
    with pytest.raises(ContractError) as raised:
        parse_translation(body)
    assert raised.value.field == field


def test_the_edge_check_names_the_template_or_the_missing_variables() -> None:
    request = parse_request({**DESIGN_BODY, "templateType": "order_shipped",
                             "notificationInfo": {"variables": {"orderId": "A-17"}}})
    assert request.templated and request.title is None
    with pytest.raises(ContractError) as raised:
        check_request(None, request)
    assert raised.value.field == "templateType"
    with pytest.raises(ContractError, match="name") as raised:
        check_request(TEMPLATE, request)
    assert raised.value.field == "notificationInfo.variables"
    check_request(TEMPLATE, parse_request({**DESIGN_BODY, "notificationInfo": {
        "variables": VARIABLES}}))


@pytest.fixture
def store(firestore_emulator: str) -> TemplateStore:
    return TemplateStore(firestore.Client(project=f"templates-{uuid.uuid4().hex[:6]}"))


def test_the_store_keeps_translations_and_the_default(store) -> None:
    assert store.get("order_shipped") is None
    assert store.put("order_shipped", "ko", KO) == "ko"  # the first is the default
    assert store.put("order_shipped", "en", EN) == "ko"
    assert store.put("order_shipped", "en", EN, default=True) == "en"
    assert store.get("order_shipped") == TEMPLATE


def test_a_cached_template_is_read_again_after_its_ttl(store) -> None:
    writer = TemplateStore(store._client)
    reader = TemplateStore(store._client, ttl_s=0.0)
    cached = TemplateStore(store._client, ttl_s=3600)
    writer.put("t", "en", KO)
    assert cached.get("t").translations["en"] == KO
    writer.put("t", "en", EN)
    assert cached.get("t").translations["en"] == KO
    assert reader.get("t").translations["en"] == EN


def test_load_directory(store, tmp_path: Path) -> None:
    (tmp_path / "order_shipped").mkdir()
    (tmp_path / "order_shipped" / "en.json").write_text(json.dumps(
        {"title": "Order {{ orderId }}", "content": "{{ name }}, your order shipped",
         "email_subject": "Your order {{ orderId }} shipped", "data": {"order": "{{ orderId }}"},
         "default": True}))
    (tmp_path / "order_shipped" / "en.html").write_text("<p>Hello {{ name }}</p>")
    (tmp_path / "order_shipped" / "ko.json").write_text(json.dumps(
        {"title": KO.title, "content": KO.content}))
    assert load_directory(store, tmp_path) == [("order_shipped", "en"), ("order_shipped", "ko")]
    assert store.get("order_shipped") == TEMPLATE
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "en.json").write_text('{"title": "{{ x"}')
    with pytest.raises(ContractError) as raised:
        load_directory(store, tmp_path)
    assert raised.value.field == "broken/en.json"


def test_the_example_templates_in_docs_load(store) -> None:
    docs = Path(__file__).parents[1] / "docs" / "templates"
    assert load_directory(store, docs) == [("order_shipped", "en"), ("order_shipped", "ko")]
    rendered = store.get("order_shipped").render("ko-KR", {"orderId": "A-17", "name": "Ana"})
    assert (rendered.locale, rendered.title) == ("ko", "주문 A-17 발송")
