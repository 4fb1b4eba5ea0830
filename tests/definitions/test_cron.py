"""Cron schedules for entry: parsing and the next firing time, in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from safar.definitions.cron import CronError, next_after, parse_cron


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def text(value: int) -> str:
    return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M %a")


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        # 2026-11-22 is a Sunday.
        ("0 9 * * 1", "2026-11-22 12:00", "2026-11-23 09:00 Mon"),
        ("0 9 * * mon", "2026-11-23 09:00", "2026-11-30 09:00 Mon"),  # strictly after
        ("0 9 * * MON", "2026-11-23 08:59:59", "2026-11-23 09:00 Mon"),
        ("*/15 * * * *", "2026-11-22 10:07:30", "2026-11-22 10:15 Sun"),
        ("*/15 * * * *", "2026-11-22 10:45", "2026-11-22 11:00 Sun"),
        ("*/15 * * * *", "2026-12-31 23:59", "2027-01-01 00:00 Fri"),
        ("30 8 * * mon-fri", "2026-11-20 09:00", "2026-11-23 08:30 Mon"),
        ("0 0 * * 7", "2026-11-20 00:00", "2026-11-22 00:00 Sun"),
        ("0 0 * * sun", "2026-11-20 00:00", "2026-11-22 00:00 Sun"),
        ("0 0 1 jan *", "2026-11-22 00:00", "2027-01-01 00:00 Fri"),
        ("0 0 1 jan-mar/2 *", "2027-01-01 00:00", "2027-03-01 00:00 Mon"),
        ("0 0 31 * *", "2027-01-31 00:00", "2027-03-31 00:00 Wed"),
        ("0 0 29 feb *", "2026-11-22 00:00", "2028-02-29 00:00 Tue"),
        ("0 0 */10 * *", "2026-11-22 00:00", "2026-12-01 00:00 Tue"),  # 1, 11, 21, 31
        ("5,35 1-3 * * *", "2026-11-22 02:40", "2026-11-22 03:05 Sun"),
        ("10/20 * * * *", "2026-11-22 02:40", "2026-11-22 02:50 Sun"),
        ("59 23 31 12 *", "2026-11-22 00:00", "2026-12-31 23:59 Thu"),
        ("@hourly", "2026-11-22 10:07", "2026-11-22 11:00 Sun"),
        ("@daily", "2026-11-22 10:07", "2026-11-23 00:00 Mon"),
        ("@weekly", "2026-11-22 10:07", "2026-11-29 00:00 Sun"),
        ("@monthly", "2026-11-22 10:07", "2026-12-01 00:00 Tue"),
        ("@yearly", "2026-11-22 10:07", "2027-01-01 00:00 Fri"),
        # Both days restricted: the 13th OR a Friday (2026-11-13 is a Friday).
        ("0 12 13 * fri", "2026-11-13 12:00", "2026-11-20 12:00 Fri"),
        ("0 12 13 * fri", "2026-11-20 12:00", "2026-11-27 12:00 Fri"),
        ("0 12 1 * fri", "2026-11-27 12:00", "2026-12-01 12:00 Tue"),
        # A day field starting with * is unrestricted for that rule: odd days AND Mondays.
        ("0 9 */2 * mon", "2026-11-22 00:00", "2026-11-23 09:00 Mon"),
        ("0 9 */2 * mon", "2026-11-23 09:00", "2026-12-07 09:00 Mon"),
    ],
)
def test_next_after(expr: str, after: str, expected: str) -> None:
    assert text(next_after(expr, ms(after))) == expected


def test_next_after_is_a_whole_minute_strictly_later() -> None:
    start = ms("2026-11-22 10:07:30.250")
    fired = next_after("* * * * *", start)
    assert fired == ms("2026-11-22 10:08")
    assert next_after("* * * * *", fired) == fired + 60_000


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 9 * *", "it needs 5 fields"),
        ("0 9 * * * *", "it needs 5 fields"),
        ("60 * * * *", "bad minute '60': out of range 0-59"),
        ("* 24 * * *", "bad hour '24': out of range 0-23"),
        ("* * 0 * *", "bad day of month '0': out of range 1-31"),
        ("* * * 13 *", "bad month '13': out of range 1-12"),
        ("* * * * 8", "bad day of week '8': out of range 0-7"),
        ("*/0 * * * *", "bad minute '*/0': the step after '/' must be a whole number above 0"),
        ("5-1 * * * *", "bad minute '5-1': a range goes from low to high, e.g. 1-5"),
        ("* * * foo *", "bad month 'foo': use a number 1-12 or a name jan-dec"),
        ("* * * * monday", "bad day of week 'monday': use a number 0-7 or a name sun-sat"),
        ("1,,2 * * * *", "bad minute '': use a number 0-59"),
        ("0 0 30 2 *", "it never fires, as day 30 does not occur in feb"),
        ("0 0 31 4,6 *", "it never fires, as day 31 does not occur in apr, jun"),
    ],
)
def test_bad_expressions(expr: str, message: str) -> None:
    with pytest.raises(CronError) as caught:
        parse_cron(expr)
    assert message in str(caught.value)


def test_impossible_day_is_fine_when_weekdays_also_match() -> None:
    # OR rule: the 30th of February never comes, but Mondays in February do.
    assert text(next_after("0 0 30 2 mon", ms("2026-11-22 00:00"))) == "2027-02-01 00:00 Mon"
