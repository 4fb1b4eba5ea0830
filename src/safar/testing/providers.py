"""Fake channel providers on 127.0.0.1, so channels (and users' journeys) are tested against real
servers speaking real protocols instead of mocks.

- :class:`SmtpSink` — an SMTP server (aiosmtpd) collecting messages; can refuse with 4xx/5xx.
- :class:`FakeSmsProvider` — a Twilio-compatible Messages endpoint with idempotency tokens.
- :class:`WebhookSink` — an HTTP server recording requests.

Each is a context manager: entering starts the server on a free port, leaving stops it.
"""

from __future__ import annotations

import base64
import email
import email.policy
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qs

import msgspec
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request a fake server received. ``headers`` has lower-case names."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return msgspec.json.decode(self.body)

    def form(self) -> dict[str, str]:
        """The body decoded as a form (the first value of each field)."""
        return {name: values[0] for name, values in parse_qs(self.body.decode()).items()}


Response = tuple[int, bytes]


class _HttpServer:
    """A threaded HTTP server on 127.0.0.1 answering every request with ``respond``."""

    def __init__(self, respond: Callable[[RecordedRequest], Response]) -> None:
        self._respond = respond
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the server is not running: use it as a context manager")
        return f"http://{HOST}:{self._server.server_address[1]}"

    def start(self) -> None:
        respond = self._respond

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = RecordedRequest(
                    method=self.command,
                    path=self.path,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                status, body = respond(request)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits for the loop to notice, 0.5 s by default.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class _Served:
    """Context-manager plumbing shared by the HTTP fakes."""

    _http: _HttpServer

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` while running."""
        return self._http.url

    def __enter__(self) -> Self:
        self._http.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._http.stop()


@dataclass(frozen=True)
class SmsRecord:
    """One message the fake SMS provider accepted."""

    sid: str
    to: str
    sender: str
    body: str
    idempotency_token: str | None


class FakeSmsProvider(_Served):
    """A Twilio-compatible ``POST /2010-04-01/Accounts/{sid}/Messages.json`` endpoint.

    Checks HTTP Basic auth against ``account_sid``/``auth_token`` and the form (``To``,
    ``From`` or ``MessagingServiceSid``, ``Body``) with Twilio's error codes. A request whose
    ``I-Twilio-Idempotency-Token`` was accepted before gets the first answer again and records
    no second message. :meth:`fail_next` makes the next requests fail. ``requests`` records every
    request, ``messages`` every accepted message.
    """

    def __init__(self, account_sid: str = "AC_test", auth_token: str = "test-token") -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.requests: list[RecordedRequest] = []
        self.messages: list[SmsRecord] = []
        self._failures: list[tuple[int, str]] = []
        self._answers: dict[str, Response] = {}
        self._lock = threading.Lock()
        self._http = _HttpServer(self._respond)

    @property
    def base_url(self) -> str:
        """What :class:`safar.channels.HttpSmsChannel` takes as ``base_url``."""
        return self.url

    def fail_next(
        self, count: int, status: int = 503, message: str = "Service unavailable"
    ) -> None:
        """Answer the next ``count`` requests with ``status`` and a Twilio-style error."""
        with self._lock:
            self._failures.extend([(status, message)] * count)

    def _respond(self, request: RecordedRequest) -> Response:
        with self._lock:
            self.requests.append(request)
            if request.method != "POST" or request.path != (
                f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
            ):
                return _twilio_error(404, 20404, "The requested resource was not found")
            if not self._authorized(request.headers.get("authorization", "")):
                return _twilio_error(401, 20003, "Authentication Error - invalid credentials")
            if self._failures:
                status, message = self._failures.pop(0)
                return _twilio_error(status, 20500 if status >= 500 else 20429, message)
            token = request.headers.get("i-twilio-idempotency-token")
            if token is not None and token in self._answers:
                return self._answers[token]
            answer = self._accept(request.form(), token)
            if token is not None and answer[0] < 300:
                self._answers[token] = answer
            return answer

    def _authorized(self, header: str) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return header == f"Basic {expected}"

    def _accept(self, form: dict[str, str], token: str | None) -> Response:
        to, body = form.get("To", ""), form.get("Body", "")
        sender = form.get("From") or form.get("MessagingServiceSid", "")
        if not to:
            return _twilio_error(400, 21604, "A 'To' phone number is required.")
        if not to.startswith("+") or not to[1:].isdigit():
            return _twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not sender:
            return _twilio_error(400, 21603, "A 'From' phone number is required.")
        if not body:
            return _twilio_error(400, 21602, "Message body is required.")
        sid = f"SM{len(self.messages) + 1:032x}"
        self.messages.append(SmsRecord(sid, to, sender, body, token))
        answer = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": to,
            "from": sender,
            "body": body,
            "status": "queued",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
        }
        return 201, msgspec.json.encode(answer)


def _twilio_error(status: int, code: int, message: str) -> Response:
    more = f"https://www.twilio.com/docs/errors/{code}"
    payload = {"code": code, "message": message, "more_info": more, "status": status}
    return status, msgspec.json.encode(payload)


class WebhookSink(_Served):
    """Records every request; answers ``status`` with ``body`` (set them, or use
    :meth:`fail_next`)."""

    def __init__(self, status: int = 200, body: Any = None) -> None:
        self.status = status
        self.body: Any = {"ok": True} if body is None else body
        self.requests: list[RecordedRequest] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._http = _HttpServer(self._respond)

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next ``count`` requests with ``status``."""
        with self._lock:
            self._failures.extend([status] * count)

    def _respond(self, request: RecordedRequest) -> Response:
        with self._lock:
            self.requests.append(request)
            if self._failures:
                status = self._failures.pop(0)
                return status, msgspec.json.encode({"error": f"failing on purpose ({status})"})
            return self.status, msgspec.json.encode(self.body)


@dataclass(frozen=True)
class ReceivedMail:
    """One message the SMTP sink accepted: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes = field(repr=False)


class SmtpSink:
    """An SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives in ``received``.

    ``credentials`` (user, password) turns on AUTH (without TLS: it is a test double).
    :meth:`fail_next` makes it refuse the next messages at ``RCPT`` or ``DATA`` with a reply
    such as ``"451 4.3.0 Try again later"`` or ``"550 5.1.1 No such user"``.
    """

    def __init__(self, *, credentials: tuple[str, str] | None = None) -> None:
        self.host = HOST
        self.port = 0
        self.received: list[ReceivedMail] = []
        self.credentials = credentials
        self._failures: list[tuple[Literal["rcpt", "data"], str]] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[EmailMessage]:
        """The parsed messages received so far."""
        return [mail.message for mail in self.received]

    def fail_next(
        self, count: int, reply: str = "451 4.3.0 Try again later", *, at: str = "data"
    ) -> None:
        """Refuse the next ``count`` messages with ``reply`` at ``rcpt`` or ``data``."""
        if at not in ("rcpt", "data"):
            raise ValueError("at is 'rcpt' or 'data'")
        stage: Literal["rcpt", "data"] = "rcpt" if at == "rcpt" else "data"
        with self._lock:
            self._failures.extend([(stage, reply)] * count)

    def _failure(self, stage: str) -> str | None:
        with self._lock:
            if self._failures and self._failures[0][0] == stage:
                return self._failures.pop(0)[1]
        return None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        refusal = self._failure("rcpt")
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        refusal = self._failure("data")
        if refusal is not None:
            return refusal
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        mail = ReceivedMail(str(envelope.mail_from), list(envelope.rcpt_tos), parsed, raw)
        with self._lock:
            self.received.append(mail)
        return "250 Message accepted"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and self.credentials is not None
            and (data.login.decode(), data.password.decode()) == self.credentials
        )
        return AuthResult(success=ok, handled=False)

    def __enter__(self) -> Self:
        self.port = _free_port()
        options: dict[str, Any] = {}
        if self.credentials is not None:
            options = {"authenticator": self._authenticate, "auth_require_tls": False}
        self._controller = Controller(self, hostname=HOST, port=self.port, **options)
        self._controller.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def _free_port() -> int:
    # aiosmtpd's controller connects to its port to check it is up, so it needs a real number.
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])
