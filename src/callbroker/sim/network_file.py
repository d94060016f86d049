"""The network file as the traffic generator reads it: without Django, and every problem a located one.

``callbroker sim traffic --network FILE`` runs without Django or a database, so it can't use the
network loader (``callbroker.network.loader``, which checks a file against the database too). It reads
the file with the loader's YAML reader (``callbroker.network.yamlfile``), and :func:`check_network`
checks the parts the traffic plan uses (keys, numbers, service areas, the lists that hold them) with the
same value rules as the loader (``callbroker.network.parsing``). Whatever is wrong becomes a
:class:`NetworkFileError` or a :class:`~callbroker.network.parsing.NetworkError` with its place in the
file, never an exception from deep inside the planner.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from callbroker.network.parsing import (
    NetworkError,
    Problem,
    join_location,
    parse_e164,
    parse_prefix,
    parse_traffic_weight,
    read_area,
    type_name,
)
from callbroker.network.yamlfile import read_yaml
from callbroker.words import counted

__all__ = ["NetworkFileError", "check_network", "read_network_file"]


class NetworkFileError(ValueError):
    """A network file that can't be read as YAML: ``str()`` is one line naming the file and the problem."""

    def __init__(self, path: Path, problem: str):
        self.path, self.problem = path, problem
        super().__init__(f"network file {path}: {problem}")


def read_network_file(path: str | os.PathLike) -> Mapping:
    """The file at ``path`` parsed as YAML, as the network loader reads it
    (:func:`callbroker.network.yamlfile.read_yaml`); a mapping (its contents are :func:`check_network`'s
    job).

    Raises :class:`NetworkFileError` when it is missing, a directory, unreadable, not UTF-8 text, not
    YAML (with the line and column), empty, or not a mapping, and
    :class:`~callbroker.network.parsing.NetworkError` listing the keys it gives twice in one mapping.
    """
    path = Path(path)
    try:
        network, repeated = read_yaml(path)
    except NetworkError as exc:
        first, more = exc.problems[0], len(exc.problems) - 1
        problem = first.message if first.location == str(path) else str(first)
        raise NetworkFileError(path, problem + (f" (and {counted(more, 'more problem')})"
                                                if more else "")) from None
    if network is None:
        raise NetworkFileError(path, "the file is empty")
    if not isinstance(network, Mapping):
        raise NetworkFileError(path, f"expected a mapping with campaigns, buyers and tracking_numbers, got "
                                     f"{_got(network)}")
    if repeated:
        raise NetworkError(repeated)
    return network


# --------------------------------------------------------------------------------------------------
# what the traffic plan reads


def check_network(network: object, directory: Any = None) -> list[Problem]:
    """Every problem in the parts of a parsed network file that the traffic plan reads, each at its place
    (``tracking_numbers[2].campaign: missing``); ``[]`` when the plan can be made.

    With a ``directory`` (``callbroker.core.geo.ZipDirectory``) the service areas' ZIP codes, counties and
    states must exist. Keys the plan doesn't read are not looked at: ``callbroker network load --check``
    checks a whole file.
    """
    problems: list[Problem] = []
    if not isinstance(network, Mapping):
        return [Problem("", f"expected a mapping with campaigns, buyers and tracking_numbers, got "
                            f"{_got(network)}")]
    for where, campaign in _mappings(network, "campaigns", "", problems):
        _required(campaign, "key", where, _key, problems)
        ivr = campaign.get("ivr")
        if ivr is not None and not isinstance(ivr, Mapping):
            problems.append(Problem(join_location(where, "ivr"), f"expected a mapping, got {_got(ivr)}"))
        for at, prefix in _list(campaign, "blocked_prefixes", where, problems):
            _run(at, parse_prefix, prefix, problems)
    for where, buyer in _mappings(network, "buyers", "", problems):
        for at, target in _mappings(buyer, "targets", where, problems):
            _required(target, "campaign", at, _key, problems)
            if target.get("number") is not None:
                _run(join_location(at, "number"), parse_e164, target["number"], problems)
            try:
                read_area(target.get("area"), directory)
            except NetworkError as exc:
                problems.extend(p.under(join_location(at, "area")) for p in exc.problems)
    for where, tracking in _mappings(network, "tracking_numbers", "", problems):
        _required(tracking, "number", where, parse_e164, problems)
        _required(tracking, "campaign", where, _key, problems)
        if tracking.get("weight") is not None:
            _run(join_location(where, "weight"), parse_traffic_weight, tracking["weight"], problems)
    return problems


def _got(value: object) -> str:
    text = type_name(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _key(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a key like austin-plumbing, got {_got(value)}")
    return value


def _run(where: str, read: Any, value: object, problems: list[Problem]) -> None:
    try:
        read(value)
    except ValueError as exc:
        problems.append(Problem(where, str(exc)))


def _required(data: Mapping, key: str, where: str, read: Any, problems: list[Problem]) -> None:
    if data.get(key) is None:
        problems.append(Problem(join_location(where, key), "missing"))
    else:
        _run(join_location(where, key), read, data[key], problems)


def _list(data: Mapping, key: str, where: str, problems: list[Problem]) -> list[tuple[str, object]]:
    """The entries of an optional list, each with its place (``buyers[2]``)."""
    value = data.get(key)
    if value is None:
        return []
    at = join_location(where, key)
    if not isinstance(value, list | tuple):
        problems.append(Problem(at, f"expected a list, got {_got(value)}"))
        return []
    return [(f"{at}[{i}]", item) for i, item in enumerate(value)]


def _mappings(data: Mapping, key: str, where: str, problems: list[Problem]) -> list[tuple[str, Mapping]]:
    """The entries of an optional list of mappings; an entry that isn't one is a problem."""
    out = []
    for at, item in _list(data, key, where, problems):
        if isinstance(item, Mapping):
            out.append((at, item))
        else:
            problems.append(Problem(at, f"expected a mapping, got {_got(item)}"))
    return out
