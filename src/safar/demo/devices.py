"""The browsers and phones synthetic customers use, and the addresses they come from.

IP addresses are taken from the ranges reserved for documentation (RFC 5737), so the demo never
points at a real host.
"""

from __future__ import annotations

from typing import Final

WEB_AGENTS: Final = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
)

#: Phones running the shop's app: (device type, manufacturer, model, OS name, OS version).
APP_DEVICES: Final = (
    ("ios", "Apple", "iPhone15,2", "iOS", "17.4"),
    ("ios", "Apple", "iPhone14,5", "iOS", "16.7"),
    ("android", "Samsung", "SM-S911B", "Android", "14"),
    ("android", "Xiaomi", "23049PCD8G", "Android", "13"),
    ("android", "Google", "Pixel 8", "Android", "14"),
)

APP: Final = {
    "name": "Safar Shop",
    "version": "3.2.1",
    "build": "321",
    "namespace": "com.example.shop",
}

IP_PREFIXES: Final = ("192.0.2.", "198.51.100.", "203.0.113.")
