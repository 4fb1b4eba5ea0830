"""Segments and computed traits as SQL over the :class:`~safar.runtime.warehouse.Warehouse`.

Each aggregate becomes one grouped query over the events (name and window filtered in SQL, a
CEL ``where`` evaluated by a Python function DuckDB calls only on the rows left), stored in a
temporary table per recompute; each segment becomes one query over the profiles joined to the
aggregates it reads, members first, so ``member:`` is a semi-join on an earlier result. Trait
comparisons on scalar operands are plain SQL with the same typing rules as
:func:`safar.core.segments.compare` (text is never equal to a number, true never to 1); other
operands, ``contains`` and CEL profile conditions call back into Python.

The answers are those of :class:`safar.core.recompute.Recompute` (tests hold them to it); this
is the fast way to get them over millions of events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from duckdb.func import SPECIAL

from safar.core.paths import dig
from safar.core.segments import Compile, compare
from safar.model.audiences import (
    DAY_MS,
    NUMERIC_KINDS,
    VALUE_KINDS,
    Aggregate,
    AllOf,
    AnyOf,
    ComputedTrait,
    Condition,
    ConsentCondition,
    IdentifierCondition,
    MemberCondition,
    Not,
    PerformedCondition,
    ProfileCondition,
    Segment,
    TraitCondition,
)
from safar.runtime.audiences import audience_compile
from safar.runtime.warehouse import Warehouse

_NUMBER_TYPES = "('UBIGINT', 'BIGINT', 'DOUBLE', 'HUGEINT')"
_decode = msgspec.json.decode
_encode = msgspec.json.encode


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _json_path(path: str) -> str | None:
    """A DuckDB JSON path for a dotted path, or None when a part is all digits (a list index
    or an object key: only Python can tell, see :func:`safar.core.paths.dig`)."""
    parts = path.split(".")
    if any(part.isdigit() for part in parts):
        return None
    return "$" + "".join('."' + part.replace('"', '\\"') + '"' for part in parts)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class SqlAudiences:
    """Recompute segments and computed traits from a warehouse at one instant."""

    def __init__(
        self,
        warehouse: Warehouse,
        segments: Sequence[Segment],
        traits: Sequence[ComputedTrait],
        compile: Compile = audience_compile,
    ) -> None:
        self.warehouse = warehouse
        self.con = warehouse.con
        self.segments = list(segments)
        self.traits = {t.id: t.aggregate for t in traits}
        self._compile = compile
        self._functions: dict[tuple[str, str], str] = {}
        self._aggregates: dict[str, str] = {}
        self._segment_tables: dict[str, str] = {}
        self._now = 0

    # -- results ------------------------------------------------------------------------------

    def run(self, now: int) -> dict[str, set[str]]:
        """Segment id -> its members' profile ids, at ``now``."""
        self._prepare(now)
        found: dict[str, set[str]] = {}
        for segment in self.segments:
            table = self._segment(segment)
            rows = self.con.execute(f"SELECT profile_id FROM {table}").fetchall()
            found[segment.id] = {row[0] for row in rows}
        return found

    def sizes(self, now: int) -> dict[str, int]:
        """Segment id -> its size at ``now``."""
        self._prepare(now)
        found = {}
        for segment in self.segments:
            table = self._segment(segment)
            found[segment.id] = int(self.warehouse.scalar(f"SELECT count(*) FROM {table}"))
        return found

    def computed(self, now: int) -> dict[str, dict[str, Any]]:
        """Profile id -> computed trait values at ``now`` (for every profile)."""
        self._prepare(now)
        values: dict[str, dict[str, Any]] = {}
        rows = self.con.execute("SELECT profile_id FROM profiles").fetchall()
        for (pid,) in rows:
            values[pid] = {}
        for name, aggregate in self.traits.items():
            table = self._aggregate(aggregate)
            empty = empty_value(aggregate)
            for pid in values:
                values[pid][name] = empty
            for pid, j in self.con.execute(f"SELECT pid, j FROM {table}").fetchall():
                if pid in values:
                    values[pid][name] = _decode(j) if j is not None else empty
        return values

    def segment_table(self, segment_id: str, now: int) -> str:
        """A temporary table ``(profile_id)`` of the members at ``now`` of one of ``segments``,
        computed from what that segment reads and nothing else."""
        self._prepare(now)
        segment = next((s for s in self.segments if s.id == segment_id), None)
        if segment is None:
            raise KeyError(f"no segment {segment_id!r} among those given")
        return self._segment(segment)

    def trait_table(self, trait_id: str, now: int) -> str:
        """A temporary table ``(pid, n, j)`` of one of ``traits`` at ``now``: its value as JSON
        text ``j`` for each profile with an event it counts; the others have
        :func:`empty_value`."""
        self._prepare(now)
        return self._aggregate(self.traits[trait_id])

    def release(self) -> None:
        """Drop the temporary tables and functions made so far: a warehouse kept open would
        collect them otherwise."""
        self._drop_tables()
        for name in self._functions.values():
            self.con.remove_function(name)
        self._functions.clear()

    def _prepare(self, now: int) -> None:
        if now != self._now or not self._aggregates:
            self._drop_tables()
            self._now = now

    def _drop_tables(self) -> None:
        for table in [*self._aggregates.values(), *self._segment_tables.values()]:
            self.con.execute(f"DROP TABLE IF EXISTS {table}")
        self._aggregates.clear()
        self._segment_tables.clear()

    # -- aggregates ---------------------------------------------------------------------------

    def _aggregate(self, aggregate: Aggregate) -> str:
        """A temporary table (pid, n, j) of the aggregate per profile: ``n`` a number for
        counts and days, ``j`` the value as JSON text."""
        key = aggregate.key
        if key in self._aggregates:
            return self._aggregates[key]
        table = self.warehouse.new_name("safar_agg")
        where = [f"e.name = {_literal(aggregate.event)}"]
        if aggregate.within_ms is not None:
            where.append(f"e.ts > {self._now - aggregate.within_ms}")
        if aggregate.where:
            where.append(f"{self._function(aggregate.where, 'event')}(e.payload)")
        value = "NULL"
        if aggregate.kind in VALUE_KINDS and aggregate.value is not None:
            path = _json_path(aggregate.value)
            if path is None:
                value = f"{self._function(aggregate.value, 'dig')}(e.payload)"
            else:
                value = f"json_extract(e.payload, {_literal(path)})"
            where.append(f"{value} IS NOT NULL AND json_type({value}) <> 'NULL'")
            if aggregate.kind in NUMERIC_KINDS:
                where.append(f"json_type({value}) IN {_NUMBER_TYPES}")
        rows = (
            f"SELECT i.profile_id AS pid, e.ts AS ts, e.seq AS seq, {value} AS val "
            f"FROM events e JOIN idents i ON e.ident = i.ident WHERE {' AND '.join(where)}"
        )
        self.con.execute(f"CREATE TEMP TABLE {table} AS {self._fold(aggregate, rows)}")
        self._aggregates[key] = table
        return table

    def _fold(self, aggregate: Aggregate, rows: str) -> str:
        kind = aggregate.kind
        if kind == "most_frequent":
            counted = (
                f"SELECT pid, val::VARCHAR AS val, count(*) AS c FROM ({rows}) GROUP BY pid, val"
            )
            return (
                f"SELECT pid, NULL AS n, arg_min(val, {{'c': -c, 'v': val}}) AS j "
                f"FROM ({counted}) GROUP BY pid"
            )
        number = "CAST(val AS DOUBLE)"
        order = "{'t': ts, 's': seq}"
        days = f"greatest(0, ({self._now} - max(ts)) // {DAY_MS})"
        # As the reference computes them: compensated sums (Python's is math.fsum), whole sums
        # written as integers, and of equal numbers (3 and 3.0) the one logged first.
        total = f"fsum({number})"
        whole = f"{total} = trunc({total}) AND abs({total}) < {2**53}"
        n, j = {
            "count": ("count(*)", "CAST(count(*) AS VARCHAR)"),
            "sum": (
                "NULL",
                f"CASE WHEN {whole} THEN CAST(CAST({total} AS BIGINT) AS VARCHAR)"
                f" ELSE to_json({total})::VARCHAR END",
            ),
            "avg": ("NULL", f"to_json({total} / count(*))::VARCHAR"),
            "min": ("NULL", f"arg_min(val, {{'v': {number}, 's': seq}})::VARCHAR"),
            "max": ("NULL", f"arg_max(val, {{'v': {number}, 's': -seq}})::VARCHAR"),
            "first": ("NULL", f"arg_min(val, {order})::VARCHAR"),
            "last": ("NULL", f"arg_max(val, {order})::VARCHAR"),
            "days_since": (days, f"CAST({days} AS VARCHAR)"),
        }[kind]
        return f"SELECT pid, {n} AS n, {j} AS j FROM ({rows}) GROUP BY pid"

    def _function(self, source: str, kind: str) -> str:
        """A DuckDB function calling back into Python: a CEL condition over the event, a
        dotted path into it, or a CEL condition over the profile."""
        key = (kind, source)
        if key in self._functions:
            return self._functions[key]
        name = self.warehouse.new_name("safar_fn")
        fn: Callable[..., Any]
        args: list[Any]
        if kind == "event":
            test = self._compile(source, ("event",))

            def event_test(payload: str) -> bool:
                return test({"event": _decode(payload)})

            fn, result = event_test, "BOOLEAN"
            args = ["VARCHAR"]
        elif kind == "dig":

            def dig_json(payload: str) -> str | None:
                found = dig(_decode(payload), source)
                return None if found is None else _encode(found).decode()

            fn, result = dig_json, "VARCHAR"
            args = ["VARCHAR"]
        else:
            profile_test = self._compile(source, ("profile", "now"))

            def cel_profile(
                pid: str, traits: str, identifiers: str, computed: str, when: int
            ) -> bool:
                merged = _decode(traits)
                merged.update(_decode(computed))
                activation = {
                    "profile": {"id": pid, "traits": merged, "identifiers": _decode(identifiers)},
                    "now": datetime.fromtimestamp(when / 1000, tz=UTC),
                }
                return profile_test(activation)

            fn, result = cel_profile, "BOOLEAN"
            args = ["VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "BIGINT"]
        self.con.create_function(name, fn, args, result, side_effects=False)
        self._functions[key] = name
        return name

    # -- segments -----------------------------------------------------------------------------

    def _segment(self, segment: Segment) -> str:
        if segment.id in self._segment_tables:
            return self._segment_tables[segment.id]
        joins: dict[str, str] = {}
        condition = self._condition(segment.where, joins)
        table = self.warehouse.new_name("safar_seg")
        joined = "".join(
            f" LEFT JOIN {t} AS {alias} ON {alias}.pid = p.profile_id" for t, alias in joins.items()
        )
        self.con.execute(
            f"CREATE TEMP TABLE {table} AS SELECT p.profile_id FROM profiles p{joined} "
            f"WHERE coalesce({condition}, false)"
        )
        self._segment_tables[segment.id] = table
        return table

    def _alias(self, aggregate: Aggregate, joins: dict[str, str]) -> str:
        table = self._aggregate(aggregate)
        return joins.setdefault(table, f"a{len(joins) + 1}")

    def _condition(self, node: Condition, joins: dict[str, str]) -> str:
        if isinstance(node, AllOf | AnyOf):
            glue = " AND " if isinstance(node, AllOf) else " OR "
            parts = [f"coalesce({self._condition(c, joins)}, false)" for c in node.conditions]
            return "(" + glue.join(parts) + ")"
        if isinstance(node, Not):
            return f"(NOT coalesce({self._condition(node.condition, joins)}, false))"
        if isinstance(node, PerformedCondition):
            alias = self._alias(node.aggregate, joins)
            op = {"gte": ">=", "lte": "<=", "eq": "="}[node.op]
            return f"(coalesce({alias}.n, 0) {op} {int(node.times)})"
        if isinstance(node, TraitCondition):
            return self._trait(node, joins)
        if isinstance(node, IdentifierCondition):
            path = _literal(_json_path(node.type) or "$")
            return f"(coalesce(json_array_length(json_extract(p.identifiers, {path})), 0) > 0)"
        if isinstance(node, ConsentCondition):
            category = _literal(node.category)
            latest = (
                "(SELECT c.subscribed FROM consents c WHERE c.owner = p.profile_id "
                f"AND c.channel = {_literal(node.channel)} "
                f"AND (c.category = {category} OR c.category = '*') "
                f"ORDER BY (c.category = {category}) DESC, c.chosen_at DESC, c.subscribed ASC "
                "LIMIT 1)"
            )
            return f"(coalesce({latest} = {'true' if node.subscribed else 'false'}, false))"
        if isinstance(node, MemberCondition):
            member = next((s for s in self.segments if s.id == node.segment), None)
            if member is None:
                return "false"
            return f"(p.profile_id IN (SELECT profile_id FROM {self._segment(member)}))"
        if isinstance(node, ProfileCondition):
            computed = self._computed_object(joins)
            name = self._function(node.where, "profile")
            return f"{name}(p.profile_id, p.traits, p.identifiers, {computed}, {self._now})"
        raise TypeError(f"unknown condition {node!r}")

    def _computed_object(self, joins: dict[str, str]) -> str:
        if not self.traits:
            return "'{}'"
        pairs = []
        for name, aggregate in self.traits.items():
            pairs.append(f"{_literal(name)}, {self._trait_json(name, aggregate, joins)}::JSON")
        return f"json_object({', '.join(pairs)})::VARCHAR"

    def _trait_json(self, name: str, aggregate: Aggregate, joins: dict[str, str]) -> str:
        alias = self._alias(aggregate, joins)
        return f"coalesce({alias}.j, {_literal(_encode(empty_value(aggregate)).decode())})"

    def python_compare(self, value: str, op: str, operand: Any) -> str:
        """SQL calling :func:`safar.core.segments.compare` on a JSON value, for comparisons
        SQL cannot say with the same typing rules (list operands, ``contains``)."""
        key = ("compare", _encode([op, operand]).decode())
        name = self._functions.get(key)
        if name is None:
            name = self.warehouse.new_name("safar_fn")

            def test(found: str | None) -> bool:
                return compare(None if found is None else _decode(found), op, operand)

            self.con.create_function(
                name,
                test,
                ["VARCHAR"],
                "BOOLEAN",
                null_handling=SPECIAL,
                side_effects=False,
            )
            self._functions[key] = name
        return f"{name}({value}::VARCHAR)"

    def _trait(self, node: TraitCondition, joins: dict[str, str]) -> str:
        if node.trait in self.traits:
            value = self._trait_json(node.trait, self.traits[node.trait], joins)
        else:
            path = _json_path(node.trait)
            value = f"json_extract(p.traits, {_literal(path)})" if path else "NULL"
        return _compare_sql(value, node.op, node.value, self)


def empty_value(aggregate: Aggregate) -> Any:
    """An aggregate's value for a customer none of whose events it counts."""
    return 0 if aggregate.kind in ("count", "sum") else None


def _scalar(value: Any) -> bool:
    return isinstance(value, str | bool | int | float) and value is not None


def _same_sql(value: str, operand: Any) -> str:
    if isinstance(operand, bool):
        return f"(json_type({value}) = 'BOOLEAN' AND {value}::VARCHAR = '{str(operand).lower()}')"
    if _number(operand):
        return f"(json_type({value}) IN {_NUMBER_TYPES} AND CAST({value} AS DOUBLE) = {operand!r})"
    text = f"json_extract_string({value}, '$')"
    return f"(json_type({value}) = 'VARCHAR' AND {text} = {_literal(operand)})"


def _compare_sql(value: str, op: str, operand: Any, owner: SqlAudiences) -> str:
    present = f"({value} IS NOT NULL AND json_type({value}) <> 'NULL')"
    if op == "exists":
        return present
    if op == "missing":
        return f"(NOT {present})"
    if op in ("eq", "ne") and _scalar(operand):
        same = f"coalesce({_same_sql(value, operand)}, false)"
        return same if op == "eq" else f"(NOT {same})"
    if op in ("in", "not_in") and isinstance(operand, list | tuple) and all(map(_scalar, operand)):
        parts = [f"coalesce({_same_sql(value, o)}, false)" for o in operand] or ["false"]
        inside = "(" + " OR ".join(parts) + ")"
        return inside if op == "in" else f"(NOT {inside})"
    symbols = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
    if op in symbols and _number(operand):
        return (
            f"(json_type({value}) IN {_NUMBER_TYPES} "
            f"AND CAST({value} AS DOUBLE) {symbols[op]} {operand!r})"
        )
    if op in symbols and isinstance(operand, str):
        return (
            f"(json_type({value}) = 'VARCHAR' "
            f"AND json_extract_string({value}, '$') {symbols[op]} {_literal(operand)})"
        )
    if op in symbols:
        return "false"
    return owner.python_compare(value, op, operand)
