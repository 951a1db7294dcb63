"""An HTTP stand-in for FCM, Twilio and SendGrid that the official SDKs talk to unchanged.

Only the SDKs' endpoint is configured, so the same sender code runs against the sandbox locally and
against the providers in production. Each provider route answers in that provider's own success
and error shapes (the SDKs parse them into their own exception types), waits the configured latency
first, and records what it accepted in a `Ledger` that `GET /_ledger` serves to tests. Faults
(`faults.py`) are injected in the same shapes, and accepted SMS and email are called back about
(`callbacks.py`) the way Twilio and SendGrid do; `GET /_callbacks` lists what was sent.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, urlsplit

from herald.contracts import PROVIDER_BY_CHANNEL, Channel
from herald.providers.fcm import labels as fcm_labels
from herald.providers.fcm import limits as fcm_limits
from herald.providers.fcm.errors import BAD_REQUEST_TYPE, FCM_ERROR_TYPE
from herald.providers.sendgrid.limits import MAX_PERSONALIZATIONS
from herald.providers.twilio.limits import MAX_BODY_CHARS
from herald.sandbox.callbacks import (DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN,
                                      DEFAULT_TWILIO_NUMBER, CallbackDispatcher, SendGridMail,
                                      SendGridRecipient, SendGridSigner, TwilioInbound,
                                      TwilioMessage)
from herald.sandbox.faults import Dice, Fault, ProviderFaults, SandboxSettings
from herald.sandbox.ledger import Delivery, Ledger
from herald.sandbox.push_outcomes import AcceptedPush, ExportSink, PushOutcomes

logger = logging.getLogger(__name__)

E164 = re.compile(r"\+[1-9]\d{6,14}")
EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
"""What the sandbox takes as an email address: one @, no whitespace, a dotted domain."""


@dataclass(frozen=True)
class Reply:
    """A response plus the deliveries it accepted and what to call back about, kept apart so the
    ledger is written and callbacks planned only after the latency wait, right before the client
    hears 2xx."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    accepted: tuple[Delivery, ...] = ()
    callback: TwilioMessage | SendGridMail | AcceptedPush | None = None


def _json_reply(status: int, payload: Any, accepted: tuple[Delivery, ...] = ()) -> Reply:
    return Reply(status, json.dumps(payload).encode(), {"Content-Type": "application/json"},
                 accepted)


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The decoded body if it is a JSON object, else None (each provider words the 400 itself)."""
    try:
        decoded = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return decoded if isinstance(decoded, dict) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    """Optional JSON objects (data, custom_args) read as empty when absent or malformed."""
    return value if isinstance(value, dict) else {}


# --- FCM HTTP v1 -------------------------------------------------------------------------------

def _fcm_error(status: int, grpc_status: str, message: str, fcm_code: str | None,
               field_path: str | None = None) -> Reply:
    """Google's error shape; firebase-admin picks its exception class from the FcmError detail,
    and a BadRequest detail names the field when the field is the problem
    (https://firebase.google.com/docs/cloud-messaging/error-codes)."""
    details: list[dict[str, Any]] = [{"@type": FCM_ERROR_TYPE, "errorCode": fcm_code}] if fcm_code else []
    if field_path:
        details.append({"@type": BAD_REQUEST_TYPE, "fieldViolations": [
            {"field": field_path, "description": message}]})
    return _json_reply(status, {"error": {
        "code": status, "message": message, "status": grpc_status, "details": details}})


def _fcm_payload_error(message: Mapping[str, Any]) -> Reply | None:
    """FCM's INVALID_ARGUMENT for what it refuses in a message: a non-string data value, a
    reserved data key, a payload over 4,096 bytes (herald.providers.fcm.limits), an analytics
    label outside FCM's format (herald.providers.fcm.labels)."""
    label = _mapping(message.get("fcm_options")).get("analytics_label")
    if label is not None and not (isinstance(label, str) and fcm_labels.valid(label)):
        return _fcm_error(400, "INVALID_ARGUMENT", f"Invalid analytics_label: {label}",
                          "INVALID_ARGUMENT", "message.fcm_options.analytics_label")
    data = _mapping(message.get("data"))
    for index, (key, value) in enumerate(data.items()):
        if not isinstance(value, str):
            return _fcm_error(400, "INVALID_ARGUMENT", f"Invalid value at 'message.data[{index}]"
                              f".value' (TYPE_STRING), {value}", None,
                              f"message.data[{index}].value")
        if fcm_limits.reserved_data_key(key):
            return _fcm_error(400, "INVALID_ARGUMENT", f"Invalid data key: {key} is reserved",
                              "INVALID_ARGUMENT", "message.data")
    notification = _mapping(message.get("notification"))
    size = fcm_limits.payload_bytes(str(notification.get("title") or ""),
                                    str(notification.get("body") or ""), data)
    if size > fcm_limits.MAX_PAYLOAD_BYTES:
        return _fcm_error(400, "INVALID_ARGUMENT", f"Message is too big ({size} bytes)",
                          "INVALID_ARGUMENT", "message")
    return None


def _fcm_send(sandbox: SandboxServer, match: re.Match[str], body: bytes) -> Reply:
    project = match["project"]
    if project != sandbox.project:
        return _fcm_error(
            403, "PERMISSION_DENIED",
            f"Permission 'cloudmessaging.messages.create' denied on resource "
            f"'//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist).",
            None)
    message = _mapping((_json_object(body) or {}).get("message"))
    token = message.get("token")
    if not isinstance(token, str) or not token:
        return _fcm_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
                          "INVALID_ARGUMENT")
    if token.startswith("unregistered-"):
        return _fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
    if token.startswith("invalid-"):
        return _fcm_error(400, "INVALID_ARGUMENT",
                          "The registration token is not a valid FCM registration token",
                          "INVALID_ARGUMENT")
    refused = _fcm_payload_error(message)
    if refused is not None:
        return refused
    name = f"projects/{project}/messages/0:{time.time_ns() // 1_000_000}%{secrets.token_hex(8)}"
    data = _mapping(message.get("data"))
    reply = _json_reply(200, {"name": name}, (Delivery(
        Channel.PUSH, token, data.get("notification_id"), data.get("span_id"), name,
        text=_mapping(message.get("notification")).get("title"),
        analytics_label=_mapping(message.get("fcm_options")).get("analytics_label")),))
    return replace(reply, callback=AcceptedPush.of(name, token, message))


# --- Twilio Messages API -----------------------------------------------------------------------

def _twilio_error(status: int, code: int, message: str) -> Reply:
    """Twilio's legacy error shape, which the SDK raises as TwilioRestException(code=...)."""
    return _json_reply(status, {"code": code, "message": message,
                                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                                "status": status})


def _twilio_create_message(sandbox: SandboxServer, match: re.Match[str], body: bytes) -> Reply:
    form = {key: values[0] for key, values in
            parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
    to, sender, text = form.get("To", ""), form.get("From"), form.get("Body")
    if not E164.fullmatch(to):
        return _twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    if not sender:
        return _twilio_error(400, 21603, "A 'From' phone number is required.")
    if not text:
        return _twilio_error(400, 21602, "Message body is required.")
    if len(text) > MAX_BODY_CHARS:
        return _twilio_error(400, 21617, f"The concatenated message body exceeds the "
                                         f"{MAX_BODY_CHARS} character limit.")
    account, sid = match["account"], "SM" + uuid.uuid4().hex
    now = format_datetime(datetime.now(timezone.utc))
    uri = f"/2010-04-01/Accounts/{account}/Messages/{sid}.json"
    resource = {
        "sid": sid, "account_sid": account, "api_version": "2010-04-01", "status": "queued",
        "to": to, "from": sender, "body": text, "direction": "outbound-api",
        "date_created": now, "date_updated": now, "date_sent": None,
        "num_segments": "1", "num_media": "0", "price": None, "price_unit": "USD",
        "error_code": None, "error_message": None, "messaging_service_sid": None,
        "uri": uri, "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
    }
    status_callback = form.get("StatusCallback") or None
    ids = parse_qs(urlsplit(status_callback or "").query)
    reply = _json_reply(201, resource, (Delivery(
        Channel.SMS, to, ids.get("notification_id", [None])[0], ids.get("span_id", [None])[0],
        sid, text),))
    return replace(reply, callback=TwilioMessage(sid, account, to, sender, status_callback))


# --- SendGrid v3 mail/send ---------------------------------------------------------------------

def _sendgrid_error(message: str, field_path: str | None, status: int = 400) -> Reply:
    return _json_reply(status, {"errors": [{"message": message, "field": field_path,
                                            "help": None}]})


def _sendgrid_send(sandbox: SandboxServer, match: re.Match[str], body: bytes) -> Reply:
    mail = _json_object(body)
    if mail is None:
        return _sendgrid_error("Bad Request", None)
    personalizations = mail.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        return _sendgrid_error("The personalizations field is required and must have at least "
                               "one personalization.", "personalizations")
    if len(personalizations) > MAX_PERSONALIZATIONS:
        return _sendgrid_error(f"The personalizations field cannot have more than "
                               f"{MAX_PERSONALIZATIONS} personalizations.", "personalizations")
    if not _mapping(mail.get("from")).get("email"):
        return _sendgrid_error("The from object must be provided for every email send. It is an "
                               "object that requires the email parameter, but may also contain "
                               "a name parameter.", "from.email")
    message_id = secrets.token_urlsafe(16)
    shared_args = _mapping(mail.get("custom_args"))
    accepted: list[Delivery] = []
    called_back: list[SendGridRecipient] = []
    bad: list[str] = []
    for index, personalization in enumerate(map(_mapping, personalizations)):
        recipients = personalization.get("to")
        if not isinstance(recipients, list) or not recipients or not all(
                _mapping(recipient).get("email") for recipient in recipients):
            return _sendgrid_error("The to array is required for all personalization objects, "
                                   "and must have at least one email object with a valid email "
                                   "address.", f"personalizations.{index}.to")
        invalid = [i for i, recipient in enumerate(recipients)
                   if not EMAIL.fullmatch(str(_mapping(recipient).get("email")))]
        if invalid:
            bad.extend(f"personalizations.{index}.to.{i}.email" for i in invalid)
            continue
        args = {**shared_args, **_mapping(personalization.get("custom_args"))}
        accepted.extend(Delivery(Channel.EMAIL, recipient["email"], args.get("notification_id"),
                                 args.get("span_id"), message_id, mail.get("subject"))
                        for recipient in recipients)
        called_back.extend(SendGridRecipient(recipient["email"], args) for recipient in recipients)
    if bad:  # SendGrid refuses the whole request, naming each bad address
        return _json_reply(400, {"errors": [{"message": "Does not contain a valid address.",
                                             "field": field_path, "help": None}
                                            for field_path in bad]})
    return Reply(202, headers={"X-Message-Id": message_id}, accepted=tuple(accepted),
                 callback=SendGridMail(message_id, tuple(called_back), html=any(
                     _mapping(part).get("type") == "text/html"
                     for part in mail.get("content") or [])))


# --- injected faults ---------------------------------------------------------------------------

_FAULT_REPLIES: Mapping[str, Mapping[Fault, Reply]] = {
    PROVIDER_BY_CHANNEL[Channel.PUSH]: {
        Fault.RATE_LIMITED: _fcm_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota "
                                       "metric 'Send requests'.", "QUOTA_EXCEEDED"),
        Fault.SERVER_ERROR: _fcm_error(500, "INTERNAL", "Internal error encountered.", "INTERNAL"),
        Fault.UNAVAILABLE: _fcm_error(503, "UNAVAILABLE", "The service is currently unavailable.",
                                      "UNAVAILABLE"),
        Fault.PERMANENT: _fcm_error(400, "INVALID_ARGUMENT", "Request contains an invalid "
                                    "argument.", "INVALID_ARGUMENT", "message"),
        Fault.CONFIGURATION: _fcm_error(403, "PERMISSION_DENIED", "SenderId mismatch",
                                        "SENDER_ID_MISMATCH"),
    },
    PROVIDER_BY_CHANNEL[Channel.SMS]: {
        Fault.RATE_LIMITED: _twilio_error(429, 20429, "Too Many Requests"),
        Fault.SERVER_ERROR: _twilio_error(500, 20500, "Internal Server Error"),
        Fault.UNAVAILABLE: _twilio_error(503, 20503, "Service Unavailable"),
        Fault.PERMANENT: _twilio_error(400, 21610, "Attempt to send to unsubscribed recipient"),
        Fault.CONFIGURATION: _twilio_error(401, 20003, "Authenticate"),
    },
    PROVIDER_BY_CHANNEL[Channel.EMAIL]: {
        Fault.RATE_LIMITED: _sendgrid_error("too many requests", None, 429),
        Fault.SERVER_ERROR: _sendgrid_error("internal error", None, 500),
        Fault.UNAVAILABLE: _sendgrid_error("service unavailable", None, 503),
        Fault.PERMANENT: _sendgrid_error("Does not contain a valid address.",
                                         "personalizations.0.to.0.email"),
        Fault.CONFIGURATION: _sendgrid_error("The provided authorization grant is invalid, "
                                             "expired, or revoked", None, 401),
    },
}
"""Each provider's answer to each injected fault but TIMEOUT, which gets no answer at all."""


def _fault_reply(provider: str, fault: Fault, faults: ProviderFaults) -> Reply:
    """The canned answer, with a 429's wait said the provider's way: SendGrid's rate-limit
    headers (https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/
    rate-limits), Retry-After for the others."""
    reply = _FAULT_REPLIES[provider][fault]
    if fault is not Fault.RATE_LIMITED:
        return reply
    if provider == PROVIDER_BY_CHANNEL[Channel.EMAIL]:
        wait = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time()) + faults.retry_after_s)}
    else:
        wait = {"Retry-After": str(faults.retry_after_s)}
    return replace(reply, headers={**reply.headers, **wait})


# --- control endpoints -------------------------------------------------------------------------

def _ledger(sandbox: SandboxServer, match: re.Match[str], body: bytes) -> Reply:
    """Every entry, or with `/_ledger/from/<n>` those from the n-th on (entries are only ever
    appended, so a reader that keeps its count fetches only what is new)."""
    start = int(match.group("start") or 0)
    return _json_reply(200, {"entries": [entry.to_json()
                                         for entry in sandbox.ledger.entries()[start:]]})


def _fcm_export(sandbox: SandboxServer, match: re.Match[str], body: bytes) -> Reply:
    return _json_reply(200, {"rows": sandbox.push_outcomes.written()})


def _health(sandbox: SandboxServer, match: re.Match[str], body: bytes) -> Reply:
    return _json_reply(200, {"ok": True})


def _config(sandbox: SandboxServer, match: re.Match[str], body: bytes) -> Reply:
    changes = _json_object(body)
    if changes is None:
        return _json_reply(400, {"error": "body must be a JSON object"})
    try:
        return _json_reply(200, sandbox.configure(changes).to_json())
    except ValueError as error:
        return _json_reply(400, {"error": str(error)})


def _callbacks(sandbox: SandboxServer, match: re.Match[str], body: bytes) -> Reply:
    return _json_reply(200, {"callbacks": [sent.to_json() for sent in sandbox.ledger.callbacks()]})


def _inbound_twilio(sandbox: SandboxServer, match: re.Match[str], body: bytes) -> Reply:
    """`{"from": phone, "body": text, "opt_out_type"?: STOP|START|HELP}`: deliver it to Herald
    as a recipient's incoming SMS; answers with Herald's status."""
    request = _json_object(body) or {}
    sender, text = request.get("from"), request.get("body")
    if not isinstance(sender, str) or not isinstance(text, str):
        return _json_reply(400, {"error": "from and body must be strings"})
    try:
        status = sandbox.callbacks.deliver_inbound(TwilioInbound(
            sandbox.twilio_account_sid, sender, sandbox.twilio_number, text,
            request.get("opt_out_type")))
    except ValueError as error:
        return _json_reply(409, {"error": str(error)})
    return _json_reply(200, {"status": status})


def _keys(sandbox: SandboxServer, match: re.Match[str], body: bytes) -> Reply:
    return _json_reply(200, {"sendgrid_webhook_public_key": sandbox.sendgrid_signer.public_key})


Handler = Callable[["SandboxServer", re.Match[str], bytes], Reply]


@dataclass(frozen=True)
class _Route:
    method: str
    path: re.Pattern[str]
    handler: Handler
    provider: str | None = None
    """Provider routes draw faults, wait the latency and count as provider requests; control
    routes (None) do none of that."""


_ROUTES = (
    _Route("POST", re.compile(r"/v1/projects/(?P<project>[^/]+)/messages:send"), _fcm_send,
           PROVIDER_BY_CHANNEL[Channel.PUSH]),
    _Route("POST", re.compile(r"/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json"),
           _twilio_create_message, PROVIDER_BY_CHANNEL[Channel.SMS]),
    _Route("POST", re.compile(r"/v3/mail/send"), _sendgrid_send,
           PROVIDER_BY_CHANNEL[Channel.EMAIL]),
    _Route("GET", re.compile(r"/_ledger(?:/from/(?P<start>[0-9]+))?"), _ledger),
    _Route("GET", re.compile(r"/_callbacks"), _callbacks),
    _Route("GET", re.compile(r"/_fcm_export"), _fcm_export),
    _Route("GET", re.compile(r"/_keys"), _keys),
    _Route("POST", re.compile(r"/_inbound/twilio"), _inbound_twilio),
    _Route("GET", re.compile(r"/_health"), _health),
    _Route("POST", re.compile(r"/_config"), _config),
)


class _RequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, because the SDKs pool connections and reconnecting per message
    would make the sandbox, not the pipeline, the bottleneck. Headers and body go out in two
    writes, so Nagle's algorithm is off: with it, the client's delayed ACK held every answer on
    a kept-alive connection back by about 40 ms."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _HttpServer

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        # Read the whole body even for a 404, or the next request on this connection misparses.
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            reply = self.server.sandbox.handle(self.command, urlsplit(self.path).path, body)
        except Exception:  # a sandbox bug must reach the client as a 500, not a dropped socket
            logger.exception("sandbox handler failed for %s %s", self.command, self.path)
            reply = _json_reply(500, {"error": "sandbox internal error"})
        if reply is None:  # an injected timeout: hang up without an answer
            self.close_connection = True
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)


class _HttpServer(ThreadingHTTPServer):
    """A deep listen backlog, because hundreds of SDK threads connecting at once otherwise see
    connection resets; no joining of handler threads on close, because keep-alive connections
    idle in them until the client goes away."""

    request_queue_size = 1024
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        super().__init__(address, _RequestHandler)
        self.sandbox = sandbox

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up waiting (its timeout) is routine here, not a stderr traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.debug("client %s hung up before the answer", client_address)
        else:
            super().handle_error(request, client_address)


class SandboxServer:
    """The provider sandbox: bound (and its callback workers running) on construction, served by
    `start()` or `serve_forever()`.

    `config` is a `POST /_config` body applied at start (faults, seed). Twilio callbacks go to
    each message's StatusCallback, SendGrid's to `sendgrid_webhook_url` (none when unset), and
    the incoming SMS `POST /_inbound/twilio` makes up to `twilio_incoming_url` (from
    `twilio_number` of `twilio_account_sid`),
    signed with `sendgrid_signer` (a fresh key when unset; `GET /_keys` serves its public half).
    Accepted pushes get FCM export rows through `fcm_export` and app receipts posted to
    `receipts_url` (herald/sandbox/push_outcomes.py), each when configured.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, latency_ms: float = 100.0,
                 project: str = "herald-local", config: Mapping[str, Any] | None = None,
                 twilio_auth_token: str = DEFAULT_TWILIO_AUTH_TOKEN,
                 sendgrid_webhook_url: str | None = None,
                 sendgrid_signer: SendGridSigner | None = None,
                 twilio_incoming_url: str | None = None,
                 twilio_account_sid: str = DEFAULT_TWILIO_ACCOUNT_SID,
                 twilio_number: str = DEFAULT_TWILIO_NUMBER,
                 fcm_export: ExportSink | None = None,
                 receipts_url: str | None = None) -> None:
        self.project = project
        self.twilio_account_sid = twilio_account_sid
        self.twilio_number = twilio_number
        self.ledger = Ledger()
        self.settings = SandboxSettings().updated({"latency_ms": latency_ms, **(config or {})})
        self._settings_lock = threading.Lock()
        self._dice = Dice(self.settings.seed)
        self.sendgrid_signer = sendgrid_signer or SendGridSigner.generate()
        self._http = _HttpServer((host, port), self)
        self.callbacks = CallbackDispatcher(
            self.ledger, self._dice, twilio_auth_token=twilio_auth_token,
            sendgrid_webhook_url=sendgrid_webhook_url, sendgrid_signer=self.sendgrid_signer,
            twilio_incoming_url=twilio_incoming_url)
        self.push_outcomes = PushOutcomes(project, self._dice, self.ledger, fcm_export,
                                          receipts_url)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL to give the SDKs; with port 0 it carries the port the OS picked."""
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}"

    def configure(self, changes: Mapping[str, Any]) -> SandboxSettings:
        """Apply `changes` (validated by SandboxSettings) and return the new settings; a `seed`
        in them restarts the random stream, so the draws that follow are reproducible."""
        with self._settings_lock:
            self.settings = self.settings.updated(changes)
            if "seed" in changes:
                self._dice.reseed(self.settings.seed)
            return self.settings

    def handle(self, method: str, path: str, body: bytes) -> Reply | None:
        """Route one request; None means hang up without answering."""
        for route in _ROUTES:
            match = route.path.fullmatch(path)
            if match is None or route.method != method:
                continue
            if route.provider is None:
                return route.handler(self, match, body)
            return self._provider_request(route.provider, route.handler, match, body)
        return _json_reply(404, {"error": f"no sandbox route for {method} {path}"})

    def _provider_request(self, provider: str, handler: Handler, match: re.Match[str],
                          body: bytes) -> Reply | None:
        """Draw a fault first: a faulted request is answered in the provider's error shape
        without being parsed, and neither recorded nor called back about; a timed-out one hangs
        for `timeout_s` and gets no answer. Otherwise the handler runs, the latency passes, and
        what it accepted is recorded and its callbacks scheduled."""
        request_index = self.ledger.next_request_index()
        settings = self.settings  # one snapshot for the whole request
        faults = settings.faults(provider)
        fault = faults.draw(self._dice)
        if fault is Fault.TIMEOUT:
            time.sleep(faults.timeout_s)
            return None
        reply = _fault_reply(provider, fault, faults) if fault else handler(self, match, body)
        time.sleep(settings.latency_ms / 1000)
        self.ledger.record(request_index, reply.accepted)
        if isinstance(reply.callback, AcceptedPush):
            self.push_outcomes.schedule(reply.callback, settings.fcm)
        elif reply.callback is not None:
            self.callbacks.schedule(reply.callback, settings)
        return reply

    def serve_forever(self) -> None:
        """Serve on the calling thread until `shutdown()` (or KeyboardInterrupt)."""
        self._http.serve_forever(poll_interval=0.05)

    def start(self) -> SandboxServer:
        """Serve on a daemon thread, for tests and in-process stacks."""
        self._thread = threading.Thread(target=self.serve_forever, name="herald-sandbox",
                                        daemon=True)
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop the `start()` thread, if any, release the port and stop the callback workers."""
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join()
            self._thread = None
        self._http.server_close()
        self.callbacks.close()
        self.push_outcomes.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
