"""Journey, policy, segment and computed-trait definition files: reading YAML, validating,
building in Python.

- :func:`parse_journey` / :func:`parse_policy` / :func:`parse_audience`: YAML text to the model,
  raising :class:`DefinitionError` with every :class:`Problem` (file, line, field, message);
- :func:`validate_journey`: checks on the whole journey (targets, loops, stages, templates,
  conditions), returning problems;
- :func:`validate_audiences`: checks on a set of segments and computed traits (ids, ``member:``
  references and cycles, conditions); :func:`topological_order` puts segments members-first;
- :class:`JourneyBuilder`: the same journeys written in Python;
- :func:`validate_paths`: what ``safar validate`` runs over files and directories.

Formats: ``docs/journeys.md``, ``docs/policy.md`` and ``docs/audiences.md``.
"""

from safar.definitions.audiences import (
    audience_kind,
    load_audience,
    parse_audience,
    segment_dependencies,
    topological_order,
    validate_audiences,
)
from safar.definitions.builder import JourneyBuilder
from safar.definitions.dump import dump_journey
from safar.definitions.durations import format_duration, parse_duration
from safar.definitions.files import validate_paths
from safar.definitions.journeys import load_journey, parse_journey
from safar.definitions.policy import DEFAULT_POLICY, load_policy, parse_policy
from safar.definitions.problems import DefinitionError, Problem
from safar.definitions.validate import validate_journey, validate_policy

__all__ = [
    "DEFAULT_POLICY",
    "DefinitionError",
    "JourneyBuilder",
    "Problem",
    "audience_kind",
    "dump_journey",
    "format_duration",
    "load_audience",
    "load_journey",
    "load_policy",
    "parse_audience",
    "parse_duration",
    "parse_journey",
    "parse_policy",
    "segment_dependencies",
    "topological_order",
    "validate_audiences",
    "validate_journey",
    "validate_paths",
    "validate_policy",
]
