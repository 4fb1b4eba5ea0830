"""The countries the synthetic shop sells in: language, phone numbers, time zone, currency, cities.

Phone numbers are unique per customer but otherwise ordinary-looking numbers, not reserved
fictional ones (few countries reserve enough), so demo data must never reach a real SMS provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Illustrative exchange rates (local units per US dollar) for pricing the catalogue; not live.
USD_RATES: Final[dict[str, float]] = {
    "USD": 1.0,
    "GBP": 0.79,
    "IRR": 1_000_000.0,
    "AED": 3.67,
    "SAR": 3.75,
    "EGP": 49.0,
    "CNY": 7.2,
}


@dataclass(frozen=True, slots=True)
class Market:
    """One country the shop sells in."""

    locale: str
    country: str
    #: BCP 47 tag as browsers and apps report it in ``context.locale``.
    language_tag: str
    timezone: str
    #: Standard-time offset from UTC in minutes. Only used to put sessions in waking hours, where
    #: an hour of daylight saving time makes no difference, so no tz database is needed.
    utc_offset_minutes: int
    currency: str
    #: E.164 prefixes (country code and mobile operator); a unique number follows.
    phone_prefixes: tuple[str, ...]
    #: The unique part: ``phone_digits`` digits, counted from ``phone_floor``.
    phone_digits: int
    phone_floor: int
    cities: tuple[str, ...]
    #: The share of the locale's customers living here.
    weight: float

    @property
    def phone_capacity(self) -> int:
        """How many distinct numbers each prefix can take."""
        return int(10**self.phone_digits) - self.phone_floor


MARKETS: Final[tuple[Market, ...]] = (
    Market(
        locale="fa",
        country="IR",
        language_tag="fa-IR",
        timezone="Asia/Tehran",
        utc_offset_minutes=210,
        currency="IRR",
        phone_prefixes=("+98912", "+98935", "+98919", "+98901", "+98921"),
        phone_digits=7,
        phone_floor=0,
        cities=("تهران", "اصفهان", "شیراز", "مشهد", "تبریز", "کرج"),
        weight=1.0,
    ),
    Market(
        locale="ar",
        country="AE",
        language_tag="ar-AE",
        timezone="Asia/Dubai",
        utc_offset_minutes=240,
        currency="AED",
        phone_prefixes=("+97150", "+97152", "+97155", "+97156"),
        phone_digits=7,
        phone_floor=0,
        cities=("دبي", "أبوظبي", "الشارقة"),
        weight=0.35,
    ),
    Market(
        locale="ar",
        country="SA",
        language_tag="ar-SA",
        timezone="Asia/Riyadh",
        utc_offset_minutes=180,
        currency="SAR",
        phone_prefixes=("+96650", "+96653", "+96654", "+96655"),
        phone_digits=7,
        phone_floor=0,
        cities=("الرياض", "جدة", "الدمام", "مكة المكرمة"),
        weight=0.35,
    ),
    Market(
        locale="ar",
        country="EG",
        language_tag="ar-EG",
        timezone="Africa/Cairo",
        utc_offset_minutes=120,
        currency="EGP",
        phone_prefixes=("+20100", "+20111", "+20122", "+20155"),
        phone_digits=7,
        phone_floor=0,
        cities=("القاهرة", "الإسكندرية", "الجيزة"),
        weight=0.30,
    ),
    Market(
        locale="zh",
        country="CN",
        language_tag="zh-CN",
        timezone="Asia/Shanghai",
        utc_offset_minutes=480,
        currency="CNY",
        phone_prefixes=("+86138", "+86139", "+86150", "+86186", "+86177"),
        phone_digits=8,
        phone_floor=0,
        cities=("上海", "北京", "深圳", "广州", "杭州", "成都"),
        weight=1.0,
    ),
    Market(
        locale="en",
        country="US",
        language_tag="en-US",
        timezone="America/New_York",
        utc_offset_minutes=-300,
        currency="USD",
        # Area codes in the Eastern time zone; local numbers may not start with 0 or 1.
        phone_prefixes=("+1212", "+1646", "+1617", "+1215", "+1404", "+1305"),
        phone_digits=7,
        phone_floor=2_000_000,
        cities=("New York", "Boston", "Philadelphia", "Atlanta", "Miami"),
        weight=0.6,
    ),
    Market(
        locale="en",
        country="GB",
        language_tag="en-GB",
        timezone="Europe/London",
        utc_offset_minutes=0,
        currency="GBP",
        phone_prefixes=("+4477", "+4478", "+4479"),
        phone_digits=8,
        phone_floor=0,
        cities=("London", "Manchester", "Bristol", "Leeds", "Edinburgh"),
        weight=0.4,
    ),
)

LOCALES: Final = ("fa", "ar", "zh", "en")

#: Markets of each locale, with the share of the locale's customers each gets.
MARKETS_BY_LOCALE: Final[dict[str, tuple[Market, ...]]] = {
    locale: tuple(m for m in MARKETS if m.locale == locale) for locale in LOCALES
}

#: Which e-mail domains customers use; reserved example domains only.
EMAIL_DOMAINS: Final = ("example.com", "example.org")
