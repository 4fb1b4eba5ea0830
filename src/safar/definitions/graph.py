"""The step graph of a journey: where each step can lead, what the first step reaches, and loops
a customer could go round without ever waiting.

Steps are nodes, numbered by their index; ``EXIT`` and unknown targets are not nodes (unknown
targets are reported on their own). When two steps share an id, the first one is the target.
"""

from __future__ import annotations

from collections.abc import Iterator

from safar.model.journeys import EXIT, Branch, Exit, Journey, Split, Wait


def successors(journey: Journey, index: int) -> Iterator[str]:
    """The targets step ``index`` can go to (``EXIT`` included)."""
    step = journey.steps[index]
    if isinstance(step, Branch):
        yield from (case.next for case in step.cases)
        yield step.otherwise
    elif isinstance(step, Split):
        yield from (branch.next for branch in step.branches)
    elif not isinstance(step, Exit):
        if step.next is not None:
            yield step.next
        else:
            yield journey.steps[index + 1].id if index + 1 < len(journey.steps) else EXIT
        if isinstance(step, Wait) and step.event is not None:
            yield step.timeout_next or EXIT


def edges(journey: Journey) -> list[list[int]]:
    """For each step, the indexes of the steps it can lead to."""
    index_of = _first_index(journey)
    return [
        [index_of[t] for t in successors(journey, i) if t != EXIT and t in index_of]
        for i in range(len(journey.steps))
    ]


def unreachable(journey: Journey) -> list[int]:
    """Indexes of the steps the first step never leads to (second copies of an id left out)."""
    if not journey.steps:
        return []
    graph = edges(journey)
    reached = {0}
    todo = [0]
    while todo:
        for target in graph[todo.pop()]:
            if target not in reached:
                reached.add(target)
                todo.append(target)
    first = _first_index(journey)
    return [
        index
        for index, step in enumerate(journey.steps)
        if index not in reached and first[step.id] == index
    ]


def _first_index(journey: Journey) -> dict[str, int]:
    index_of: dict[str, int] = {}
    for index, step in enumerate(journey.steps):
        index_of.setdefault(step.id, index)
    return index_of


def loops_without_wait(journey: Journey) -> list[list[int]]:
    """Groups of steps (indexes, sorted) that form a loop with no ``wait`` step in it.

    A loop through a wait is fine, the customer pauses at each turn; without one a customer would
    spin through it at once, forever.
    """
    moving = [not isinstance(step, Wait) for step in journey.steps]
    graph = [[t for t in targets if moving[t]] for targets in edges(journey)]
    return _cycles(graph, moving)


def _cycles(edges: list[list[int]], included: list[bool]) -> list[list[int]]:
    """Strongly connected groups of ``included`` nodes that contain a cycle (Tarjan), each in
    index order."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    found: list[list[int]] = []
    counter = 0

    for root in range(len(edges)):
        if not included[root] or root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            if child < len(edges[node]):
                work.append((node, child + 1))
                target = edges[node][child]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1 or node in edges[node]:
                    found.append(sorted(group))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return sorted(found)
