"""The DBOS peer of the abandoned-cart benchmark: it runs the journey the way Safar does."""

from __future__ import annotations

from pathlib import Path

import pytest

from safar.bench.dbos_peer import (
    SPLIT_SEED,
    NullChannel,
    arm_of,
    customer_id,
    expected_messages,
    is_vip,
    orders,
    run_dbos,
)
from safar.core.journey import split_bucket


def test_split_agrees_with_the_journey_core() -> None:
    for index in range(500):
        customer = customer_id(index)
        point = split_bucket(SPLIT_SEED, customer) * 100
        expected = "email" if point < 45 else "sms" if point < 90 else "control"
        assert arm_of(customer) == expected


def test_dbos_runs_every_journey_and_sends_what_the_journey_implies(tmp_path: Path) -> None:
    pytest.importorskip("dbos")
    customers = [customer_id(i) for i in range(20)]
    order_share = 0.1
    ordered = {c for c in customers if orders(c, order_share)}
    coupons = {c for c in customers if c not in ordered and arm_of(c) != "control" and is_vip(c)}
    assert ordered and coupons, "the fixture must reach the goal exit and the coupon"
    channel = NullChannel()

    # Long enough for each order, sent right after its cart event, to arrive within the first wait.
    result = run_dbos(20, tmp_path, wait_seconds=1.0, order_share=order_share, channel=channel)

    assert result["customers"] == 20
    assert result["finished"] == 20
    assert result["messages"] == expected_messages(customers, order_share) == len(channel.sent)
    assert not {customer for _, customer, _ in channel.sent} & ordered
    assert {customer for _, customer, template in channel.sent if template == "cart_coupon"} == (
        coupons
    )
