"""Templates: a request's `templateType` names a template with one translation per locale, rendered
with the request's `notificationInfo.variables` in the recipient's locale.

Stored in Herald's own Firestore database (`Settings.state_database`, herald-state): templates are
Herald's configuration, which operators edit without a deploy (`PUT /v1/templates/{templateType}/
{locale}`, `herald templates load <dir>`); the app's database holds only what the app owns (its
users). Layout:

    templates/{templateType}                    default_locale
    templates/{templateType}/locales/{locale}   title, content, email_subject, email_html, data

Every text is a Jinja2 template rendered in Jinja2's SandboxedEnvironment (no attribute access to
Python internals, no eval) with StrictUndefined, so a variable the request did not give is an
error rather than an empty string; `email_html` is rendered with autoescaping, so a variable's `<`
reaches the mail as `&lt;`. The recipient's locale picks the translation along a fallback chain:
`ko-KR`, then `ko`, then the template's default locale.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment
from google.cloud import firestore

from herald.contracts import ContractError, NotificationRequest, text
from herald.users import BCP47, name

COLLECTION = "templates"
LOCALES = "locales"
DEFAULT_LOCALE = "default_locale"
TEXT_FIELDS = ("title", "content", "email_subject", "email_html")
REQUIRED_FIELDS = ("title", "content")
MAX_TEXT = 64 * 1024
CACHE_TTL_S = 60.0
"""How long a process keeps a template it read: an edit reaches every sender within a minute."""

_TEXT = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
_HTML = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=True)


class TemplateError(ValueError):
    """A template that cannot be rendered for a delivery: unknown, or a variable missing."""


@dataclass(frozen=True)
class Translation:
    """One locale's texts (Jinja2 sources). `email_subject` defaults to `title` for email."""

    title: str
    content: str
    email_subject: str | None = None
    email_html: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)
    """Push data (FCM `data`): key -> Jinja2 source of its string value."""

    def sources(self) -> dict[str, str]:
        """Every Jinja2 source, by its field path."""
        texts = {key: getattr(self, key) for key in TEXT_FIELDS if getattr(self, key) is not None}
        return {**texts, **{f"data.{key}": value for key, value in self.data.items()}}

    def variables(self) -> set[str]:
        """The top-level variables its texts use."""
        return {variable for path, source in self.sources().items()
                for variable in meta.find_undeclared_variables(
                    (_HTML if path == "email_html" else _TEXT).parse(source))}

    def to_document(self) -> dict[str, Any]:
        return asdict(self)


def parse_translation(body: Any) -> Translation:
    """A `PUT /v1/templates/{templateType}/{locale}` body (or a file `herald templates load`
    reads): `title` and `content` required, `email_subject`, `email_html` and `data` optional,
    every text valid Jinja2. ContractError names the field."""
    if not isinstance(body, Mapping):
        raise ContractError("body", "must be a JSON object")
    allowed = (*TEXT_FIELDS, "data", "default")
    for key in body:
        if key not in allowed:
            raise ContractError(key, f"is not a known field; use {list(allowed)}")
    texts: dict[str, str | None] = {}
    for key in TEXT_FIELDS:
        value = body.get(key)
        if value is None and key not in REQUIRED_FIELDS:
            texts[key] = None
            continue
        texts[key] = text(value, key, MAX_TEXT)
    data = body.get("data") or {}
    if not isinstance(data, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ContractError("data", "must be an object of string values (Jinja2 templates)")
    translation = Translation(**texts, data=dict(data))
    for path, source in translation.sources().items():
        try:
            (_HTML if path == "email_html" else _TEXT).parse(source)
        except jinja2.TemplateSyntaxError as error:
            raise ContractError(path, f"is not a valid template: {error.message} "
                                      f"(line {error.lineno})") from error
    return translation


def locale_id(value: str, path: str = "locale") -> str:
    """A BCP 47 tag that can name a translation's document."""
    name(value, path)
    if not BCP47.fullmatch(value):
        raise ContractError(path, "must be a BCP 47 language tag such as ko-KR")
    return value


def fallback_chain(locale: str | None, default: str) -> list[str]:
    """`ko-KR` -> [ko-KR, ko, default]: the locale, each shorter prefix, the template's default."""
    chain = []
    if locale:
        parts = locale.split("-")
        chain = ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]
    return list(dict.fromkeys([*chain, default]))


@dataclass(frozen=True)
class Rendered:
    """A translation rendered for one delivery; `locale` is the translation used."""

    locale: str
    title: str
    content: str
    email_subject: str
    email_html: str | None
    data: Mapping[str, str]


@dataclass(frozen=True)
class Template:
    template_type: str
    default_locale: str
    translations: Mapping[str, Translation]

    def pick(self, locale: str | None) -> tuple[str, Translation]:
        """The translation for a recipient's locale (None: unknown) along its fallback chain;
        tags compare case-insensitively, as BCP 47 says."""
        by_tag = {tag.lower(): tag for tag in self.translations}
        for candidate in fallback_chain(locale, self.default_locale):
            tag = by_tag.get(candidate.lower())
            if tag is not None:
                return tag, self.translations[tag]
        raise TemplateError(f"template {self.template_type!r} has no translation for "
                            f"{locale!r} and no default ({self.default_locale!r})")

    def variables(self) -> set[str]:
        """Every variable some translation uses: what a request must give."""
        return {v for translation in self.translations.values() for v in translation.variables()}

    def render(self, locale: str | None, variables: Mapping[str, Any]) -> Rendered:
        """Raises TemplateError naming the text and the problem (a missing variable, a sandbox
        violation), never anything else."""
        tag, translation = self.pick(locale)
        rendered: dict[str, str] = {}
        for path, source in translation.sources().items():
            env = _HTML if path == "email_html" else _TEXT
            try:
                rendered[path] = env.from_string(source).render(variables)
            except jinja2.TemplateError as error:  # UndefinedError, SecurityError, ...
                raise TemplateError(f"template {self.template_type!r} ({tag}) {path}: "
                                    f"{error}") from error
            except Exception as error:  # noqa: BLE001 - a filter's own error ('x' | int on a list...)
                raise TemplateError(f"template {self.template_type!r} ({tag}) {path}: "
                                    f"{type(error).__name__}: {error}") from error
        return Rendered(
            locale=tag, title=rendered["title"], content=rendered["content"],
            email_subject=rendered.get("email_subject", rendered["title"]),
            email_html=rendered.get("email_html"),
            data={key[len("data."):]: value for key, value in rendered.items()
                  if key.startswith("data.")})


def check_request(template: Template | None, request: NotificationRequest) -> None:
    """What the edge can know before accepting a templated request: the template exists and
    the request gives every variable it uses. ContractError naming the field otherwise."""
    if template is None:
        raise ContractError("templateType", f"no template {request.template_type!r}; PUT "
                            "/v1/templates/{templateType}/{locale} first, or give "
                            "notificationInfo.title and content")
    missing = sorted(template.variables() - set(request.variables))
    if missing:
        raise ContractError("notificationInfo.variables", f"misses {missing}, used by template "
                            f"{request.template_type!r}")


class TemplateStore:
    """Templates in Firestore, each cached for CACHE_TTL_S per process (thread-safe)."""

    def __init__(self, client: firestore.Client, ttl_s: float = CACHE_TTL_S,
                 call: Mapping[str, Any] | None = None) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._call = dict(call or {})
        self._cache: dict[str, tuple[float, Template]] = {}
        self._lock = threading.Lock()

    def _ref(self, template_type: str) -> firestore.DocumentReference:
        return self._client.collection(COLLECTION).document(template_type)

    def get(self, template_type: str) -> Template | None:
        """The template (None: there is none), from the cache when read in the last TTL. An
        absent template is not cached, so one stored a moment ago is found at once."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(template_type)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        template = self._read(template_type)
        if template is not None:
            with self._lock:
                self._cache[template_type] = (now, template)
        return template

    def _read(self, template_type: str) -> Template | None:
        snapshot = self._ref(template_type).get(**self._call)
        if not snapshot.exists:
            return None
        translations = {doc.id: Translation(**doc.to_dict())
                        for doc in self._ref(template_type).collection(LOCALES).stream(**self._call)}
        return Template(template_type, snapshot.to_dict()[DEFAULT_LOCALE], translations)

    def put(self, template_type: str, locale: str, translation: Translation,
            default: bool = False) -> str:
        """Store a translation; it becomes the default when asked or when the template has none
        yet. Returns the template's default locale."""
        ref = self._ref(template_type)

        @firestore.transactional
        def write(transaction: firestore.Transaction) -> str:
            current = ref.get(transaction=transaction)
            default_locale = (current.to_dict() or {}).get(DEFAULT_LOCALE) if current.exists else None
            if default or default_locale is None:
                default_locale = locale
            transaction.set(ref, {DEFAULT_LOCALE: default_locale})
            transaction.set(ref.collection(LOCALES).document(locale), translation.to_document())
            return default_locale

        default_locale = write(self._client.transaction())
        with self._lock:
            self._cache.pop(template_type, None)
        return default_locale


def load_directory(store: TemplateStore, directory: Path) -> list[tuple[str, str]]:
    """`<directory>/<templateType>/<locale>.json` (a PUT body; `"default": true` marks the default
    locale), with `<locale>.html` beside it as the email HTML if present. Every file is checked
    before any is stored. Returns the (templateType, locale) pairs loaded."""
    parsed = []
    for path in sorted(directory.glob("*/*.json")):
        template_type, locale = path.parent.name, path.stem
        where = f"{path.relative_to(directory)}"
        try:
            body = json.loads(path.read_text())
            html = path.with_suffix(".html")
            if html.exists() and isinstance(body, dict):
                body = {**body, "email_html": html.read_text()}
            parsed.append((name(template_type, "templateType"), locale_id(locale),
                           parse_translation(body), bool(body.get("default"))))
        except (ValueError, ContractError) as error:
            raise ContractError(where, str(error)) from error
    for template_type, locale, translation, default in parsed:
        store.put(template_type, locale, translation, default)
    return [(template_type, locale) for template_type, locale, _, _ in parsed]
