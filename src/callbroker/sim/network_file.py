"""The network file as the traffic generator reads it: without Django, and every problem a located one.

``callbroker sim traffic --network FILE`` runs without Django or a database, so it can't use the
network loader (``callbroker.network.loader``, which checks a file against the database too). It reads
the file here instead, and :func:`check_network` checks the parts the traffic plan uses (keys, numbers,
service areas, the lists that hold them) with the same value rules as the loader
(``callbroker.network.parsing``). Whatever is wrong becomes a :class:`NetworkFileError` or a
:class:`~callbroker.network.parsing.NetworkError` with its place in the file, never an exception from
deep inside the planner.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from callbroker.network.parsing import (
    NetworkError,
    Problem,
    join_location,
    parse_e164,
    parse_prefix,
    read_area,
    type_name,
)

__all__ = ["NetworkFileError", "check_network", "read_network_file"]


class NetworkFileError(ValueError):
    """A network file that can't be read as YAML: ``str()`` is one line naming the file and the problem."""

    def __init__(self, path: Path, problem: str):
        self.path, self.problem = path, problem
        super().__init__(f"network file {path}: {problem}")


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when installed
    """Safe YAML whose unquoted dates that aren't real ones (``2026-02-30``) are a YAML problem with a
    line and column, not a ``ValueError`` from inside the parser."""

    def construct_real_date(self, node: yaml.ScalarNode) -> Any:
        try:
            return self.construct_yaml_timestamp(node)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(None, None, f"'{node.value}' is not a real date ({exc})",
                                                    node.start_mark) from None


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_real_date)

#: What YAML counts as a line break.
_YAML_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def read_network_file(path: str | os.PathLike) -> Mapping:
    """The file at ``path`` parsed as YAML; a mapping (its contents are :func:`check_network`'s job).

    Raises :class:`NetworkFileError` when it is missing, a directory, unreadable, not UTF-8 text, not
    YAML (with the line and column), empty, or not a mapping.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise NetworkFileError(path, "is a directory, not a file")
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):  # a device: /dev/zero would never end
            raise NetworkFileError(path, "is not a file")
        data = path.read_bytes()
    except FileNotFoundError:
        raise NetworkFileError(path, "no such file") from None
    except OSError as exc:  # permission denied, a loop of links …
        raise NetworkFileError(path, f"cannot read it: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _line_and_column(data, exc.start, b"\n")
        raise NetworkFileError(path, f"not UTF-8 text (byte 0x{data[exc.start]:02X} at line {line}, column "
                                     f"{column}): a network file is YAML") from None
    loader = _Loader(text)
    try:
        network = loader.get_single_data()
    except yaml.reader.ReaderError as exc:
        raise NetworkFileError(path, _reader_problem(exc, text)) from None
    except yaml.YAMLError as exc:
        raise NetworkFileError(path, _yaml_problem(exc)) from None
    except RecursionError:
        raise NetworkFileError(path, "not valid YAML: nested too deeply") from None
    finally:
        loader.dispose()
    if network is None:
        raise NetworkFileError(path, "the file is empty")
    if not isinstance(network, Mapping):
        raise NetworkFileError(path, f"expected a mapping with campaigns, buyers and tracking_numbers, got "
                                     f"{_got(network)}")
    return network


def _line_and_column(text: str | bytes, index: int, breaks: Any) -> tuple[int, int]:
    if isinstance(text, bytes):
        start = text.rfind(breaks, 0, index) + 1
        return text.count(breaks, 0, index) + 1, index - start + 1
    found = list(breaks.finditer(text, 0, index))
    return len(found) + 1, index - (found[-1].end() if found else 0) + 1


def _reader_problem(exc: yaml.reader.ReaderError, text: str) -> str:
    """A character YAML doesn't allow (a NUL byte, a control character) at its line and column: the reader
    counts its position in characters (PyYAML) or bytes (libyaml), so the character itself is looked for."""
    character = chr(exc.character) if isinstance(exc.character, int) else str(exc.character)
    message = f"not valid YAML: the character U+{ord(character):04X} is not allowed in a YAML file"
    index = text.find(character)
    if index < 0:
        return message
    line, column = _line_and_column(text, index, _YAML_BREAK)
    return f"{message} (line {line}, column {column})"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """``not valid YAML at line 3, column 7: <problem> (<context> that starts on line 2, column 1)``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).replace("\n", " ")
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context:
        where = (f" that starts on line {context_mark.line + 1}, column {context_mark.column + 1}"
                 if context_mark is not None and mark is not None and context_mark.line != mark.line else "")
        problem += f" ({context}{where})"
    mark = mark or context_mark
    if mark is None:
        return f"not valid YAML: {problem}"
    return f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"


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
            _run(join_location(where, "weight"), _weight, tracking["weight"], problems)
    return problems


def _got(value: object) -> str:
    text = type_name(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _key(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a key like austin-plumbing, got {_got(value)}")
    return value


#: The largest tracking-number weight: any number of them still adds up to a finite total.
MAX_WEIGHT = 1_000_000


def _weight(value: object) -> float:
    try:
        ok = isinstance(value, int | float | Decimal) and not isinstance(value, bool) and 0 < value <= MAX_WEIGHT
    except ArithmeticError:  # a Decimal NaN can't be compared
        ok = False
    if not ok:
        raise ValueError(f"expected a number above 0 and at most {MAX_WEIGHT:,} (a share of the calls), "
                         f"got {_got(value)}")
    return float(value)


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
