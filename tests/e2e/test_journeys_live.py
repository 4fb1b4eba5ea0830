"""A real SDK → ``safar serve`` → profiles → audiences → a published journey → a real SMTP
server, on each configuration (``storage_env``)."""

from __future__ import annotations

import email.header
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import segment.analytics as segment

from safar.testing import wait_until
from safar.testing.providers import SmtpSink
from tests.e2e.live import LiveServer

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PUBLISH = [sys.executable, "-m", "safar.cli", "journeys", "publish"]
AUDIENCES = [sys.executable, "-m", "safar.cli", "audiences", "publish"]


THANKS = """
id: thank-repeat-buyers
name: Thank repeat buyers
entry:
  segment: repeat-buyers
steps:
  - id: thanks
    send: {channel: email, template: welcome_1, category: transactional}
"""


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


def _environment(tmp_path: Path, smtp: SmtpSink, storage_env: dict[str, str]) -> dict[str, str]:
    """Safar's environment for a live run that e-mails through ``smtp``."""
    # No quiet hours: the default ones (21:00-08:00 UTC) would hold the email back whenever
    # the test runs in the evening.
    policy = tmp_path / "policy.yaml"
    policy.write_text("quiet_hours: false\n", encoding="utf-8")
    return {
        "SAFAR_JOURNEYS_TEMPLATES_DIR": str(EXAMPLES / "templates"),
        "SAFAR_JOURNEYS_POLICY_FILE": str(policy),
        "SAFAR_CHANNELS_SMTP_HOST": smtp.host,
        "SAFAR_CHANNELS_SMTP_PORT": str(smtp.port),
        "SAFAR_CHANNELS_SMTP_SENDER": "Safar Shop <shop@example.com>",
        "SAFAR_CHANNELS_SMTP_STARTTLS": "false",
        **storage_env,
    }


def _cli(command: list[str], tmp_path: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        [*command, "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_welcome_journey_emails_a_new_customer_in_persian(
    tmp_path: Path, smtp: SmtpSink, storage_env: dict[str, str]
) -> None:
    env = _environment(tmp_path, smtp, storage_env)
    _cli([*PUBLISH, str(EXAMPLES / "journeys/welcome.yaml")], tmp_path, env)
    live = LiveServer(tmp_path, env=env).start()
    try:
        client = segment.Client(live.write_key, host=live.url, sync_mode=True, max_retries=0)
        client.identify(
            user_id="sara",
            traits={"email": "sara@example.com", "first_name": "سارا", "locale": "fa-IR"},
        )
        client.track(user_id="sara", event="Signed Up")
        client.flush()
        wait_until(lambda: len(smtp.messages) >= 1, timeout=60)
        (mail,) = smtp.messages
        subject = str(email.header.make_header(email.header.decode_header(mail["Subject"])))
        assert "خوش آمدید" in subject
        assert mail["To"] == "sara@example.com"
        assert mail["Content-Language"] == "fa"
        unsubscribe = mail["List-Unsubscribe"].strip("<>")
        assert unsubscribe.startswith(f"{live.url}/l/u/") or "/l/u/" in unsubscribe
        html = next(p for p in mail.walk() if p.get_content_type() == "text/html")
        assert 'dir="rtl"' in html.get_content()
        # Delivered once: the receipt is in the customer's timeline.
        live.wait_processed()
        names = [e.get("event") for e in live.events("user_id:sara")]
        wait_until(
            lambda: "Message Sent" in [e.get("event") for e in live.events("user_id:sara")],
            timeout=30,
        )
        assert "Signed Up" in names
        # One-click unsubscribe (RFC 8058) through the signed link.
        answer = httpx.post(
            unsubscribe.replace("localhost", "127.0.0.1"),
            data={"List-Unsubscribe": "One-Click"},
        )
        assert answer.status_code == 200
    finally:
        live.stop()
    assert len(smtp.messages) == 1


def test_entering_a_segment_starts_a_journey_that_emails_the_customer(
    tmp_path: Path, smtp: SmtpSink, storage_env: dict[str, str]
) -> None:
    """The whole way: an SDK's events, the profile, the segment they bring the customer into
    (kept by the partition owner on scale-out), the journey that segment starts, the e-mail."""
    env = _environment(tmp_path, smtp, storage_env)
    segment_file = EXAMPLES / "audiences/repeat_buyers.yaml"
    _cli([*AUDIENCES, str(segment_file)], tmp_path, env)
    journey = tmp_path / "thanks.yaml"
    journey.write_text(THANKS, encoding="utf-8")
    _cli([*PUBLISH, str(journey)], tmp_path, env)
    live = LiveServer(tmp_path, env=env).start()
    try:
        client = segment.Client(live.write_key, host=live.url, sync_mode=True, max_retries=0)
        client.identify(user_id="omid", traits={"email": "omid@example.com"})
        # Two orders over 100 in 30 days make a repeat buyer; the one of 80 does not count.
        for revenue in (150, 80, 120):
            client.track(user_id="omid", event="Order Completed", properties={"revenue": revenue})
        client.flush()
        wait_until(lambda: len(smtp.messages) >= 1, timeout=60)
        (mail,) = smtp.messages
        assert mail["To"] == "omid@example.com"
        assert "Welcome to Safar Shop" in str(mail["Subject"])

        def entered() -> list[dict[str, Any]]:
            return [e for e in live.events("user_id:omid") if e.get("event") == "Segment Entered"]

        wait_until(lambda: len(entered()) == 1, timeout=30)
        assert entered()[0]["properties"]["segment_id"] == "repeat-buyers"
    finally:
        live.stop()
    assert len(smtp.messages) == 1
