"""The ``email`` channel over SMTP (smtplib), one multipart/alternative message per send."""

from __future__ import annotations

import contextlib
import hashlib
import smtplib
import ssl
import threading
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from safar.errors import DeliveryError
from safar.model.messages import Receipt, RenderedMessage
from safar.templates.html import html_to_text

#: Headers Safar sets itself; a message's own headers may not replace them.
_OWN_HEADERS = frozenset(
    {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "content-language",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "x-safar-idempotency-key",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)


class SmtpEmailChannel:
    """Sends ``message.subject``, ``text`` and ``html`` to the address ``message.to``.

    The message is multipart/alternative (text, then HTML) in UTF-8, with ``Message-ID``
    derived from the message key (a resend has the same id), ``X-Safar-Idempotency-Key``,
    ``Content-Language``, and ``List-Unsubscribe`` with one-click ``List-Unsubscribe-Post`` when
    the message has an unsubscribe URL. ``implicit_tls`` connects with TLS (port 465); ``starttls``
    upgrades a plain connection (port 587). One connection is kept and reused, under a lock.

    SMTP replies 5xx are not retryable; 4xx, connection failures and timeouts are.
    """

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        implicit_tls: bool = False,
        timeout: float = 10.0,
        message_id_domain: str | None = None,
        name: str = "email",
    ) -> None:
        self.name = name
        self._host = host
        self._port = port
        self._sender = sender
        self._username = username
        self._password = password
        self._starttls = starttls
        self._implicit_tls = implicit_tls
        self._timeout = timeout
        address = parseaddr(sender)[1]
        self._domain = message_id_domain or address.rpartition("@")[2] or "safar.invalid"
        self._envelope_from = address or sender
        self._lock = threading.Lock()
        self._smtp: smtplib.SMTP | None = None

    def send(self, message: RenderedMessage) -> Receipt:
        if not message.to or "@" not in message.to:
            raise DeliveryError(f"not an e-mail address: {message.to!r}", retryable=False)
        email = self.build(message)
        with self._lock:
            try:
                self._deliver(email, message.to)
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = next(iter(exc.recipients.values()))
                raise _reply_error(code, reply, "recipient refused") from exc
            except smtplib.SMTPResponseException as exc:
                self._drop()
                raise _reply_error(exc.smtp_code, exc.smtp_error, "refused") from exc
            except smtplib.SMTPNotSupportedError as exc:
                self._drop()
                raise DeliveryError(f"SMTP server: {exc}", retryable=False) from exc
            except (smtplib.SMTPException, OSError) as exc:
                self._drop()
                raise DeliveryError(
                    f"SMTP server {self._host}:{self._port} unreachable: {exc}", retryable=True
                ) from exc
        return Receipt(provider_id=str(email["Message-ID"]))

    def build(self, message: RenderedMessage) -> EmailMessage:
        """The MIME message ``send`` hands to the server."""
        email = EmailMessage()
        try:
            email["From"] = self._sender
            email["To"] = message.to
            email["Subject"] = message.subject or ""
            email["Date"] = formatdate(usegmt=True)
            email["Message-ID"] = message_id(message.key, self._domain)
            email["X-Safar-Idempotency-Key"] = message.key
            if message.unsubscribe_url:
                email["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
                email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            for header, value in message.headers.items():
                if header.lower() not in _OWN_HEADERS:
                    email[header] = value
        except ValueError as exc:  # a line break in a header value
            raise DeliveryError(f"invalid e-mail header: {exc}", retryable=False) from exc
        text = message.text or (html_to_text(message.html) if message.html else "")
        email.set_content(text, charset="utf-8", cte=_transfer_encoding(text))
        if message.html:
            html = message.html
            email.add_alternative(
                html, subtype="html", charset="utf-8", cte=_transfer_encoding(html)
            )
        # After the content: setting it clears every Content-* header.
        email["Content-Language"] = message.locale
        return email

    def close(self) -> None:
        """Say QUIT and close the kept connection, if any."""
        with self._lock:
            if self._smtp is not None:
                with contextlib.suppress(smtplib.SMTPException, OSError):
                    self._smtp.quit()
                self._drop()

    def _deliver(self, email: EmailMessage, to: str) -> None:
        reused = self._smtp is not None
        try:
            self._connection().send_message(email, self._envelope_from, [to])
        except smtplib.SMTPServerDisconnected:
            self._drop()
            if not reused:
                raise
            # The kept connection timed out on the server's side while idle: one new try.
            self._connection().send_message(email, self._envelope_from, [to])

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is None:
            smtp: smtplib.SMTP
            if self._implicit_tls:
                context = ssl.create_default_context()
                smtp = smtplib.SMTP_SSL(
                    self._host, self._port, timeout=self._timeout, context=context
                )
            else:
                smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
            try:
                if self._starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._username:
                    smtp.login(self._username, self._password or "")
            except BaseException:
                smtp.close()
                raise
            self._smtp = smtp
        return self._smtp

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None


def message_id(key: str, domain: str) -> str:
    """The ``Message-ID`` of the message with idempotency key ``key``: the same on every resend."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"<safar.{digest}@{domain}>"


def _transfer_encoding(text: str) -> str:
    """7-bit safe for any server: quoted-printable for mostly-ASCII text, else base64 (shorter
    for Persian, Arabic and Chinese, where most characters take several bytes)."""
    ascii_chars = sum(1 for char in text if char < "\x80")
    return "quoted-printable" if ascii_chars >= 0.8 * len(text) else "base64"


def _reply_error(code: int, reply: bytes | str, what: str) -> DeliveryError:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
    # 5xx is permanent; 4xx is temporary, and so is a reply smtplib could not read (-1).
    return DeliveryError(f"SMTP {what}: {code} {text}", retryable=not 500 <= code < 600)
