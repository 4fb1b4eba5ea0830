"""scan: what a batch brings, the same whether or not its memos are warm."""

from __future__ import annotations

from safar.core.batch import Pairs, scan
from safar.core.identity import edge_key, extract
from safar.model.profiles import Identifier
from tests.core.test_identity import RULES, event


def test_scan_with_warm_memos_matches_extract() -> None:
    events = [
        event(user=" u1 ", anon="a1", ts=5, mid="m1"),
        event("page", anon="a2", ts=3, mid="m2"),
        event(user="null", anon="a3", ts=4, mid="m3"),
        event(user="unknown", ts=4, mid="m4"),
        event("identify", user="u1", anon="a1", ts=2, mid="m5", traits={"email": "E@x.io"}),
        event(user="u1", anon="a1", ts=1, mid="m6", context={"traits": {"email": "f@x.io"}}),
        event(user=" u1", anon="a1 ", ts=9, mid="m7"),
    ]
    keys: dict[tuple[Identifier, ...], str] = {}
    pairs: Pairs = {}
    cold = scan(events, RULES)
    scan(events, RULES, keys, pairs)
    warm = scan(events, RULES, keys, pairs)
    assert warm == cold
    expected = [(e, *extract(e, RULES)) for e in events if extract(e, RULES).identifiers]
    assert warm.events == expected
    pair = (("user_id", "u1"), ("anonymous_id", "a1"))
    assert warm.edges[edge_key(pair)].message_id == "m1"  # m6 also names an email
    assert warm.seen[("user_id", "u1")] == (1, 9)
    assert ("user_id", "null") not in warm.seen
