"""Reading a network file's YAML: one reader for ``callbroker network load`` and ``sim traffic --network``.

Nothing here touches Django or the database (the traffic generator runs without either). Whatever keeps a
file from being read is a :class:`~callbroker.network.parsing.Problem`: the file's own problems (missing,
a directory, a device, unreadable, not UTF-8) are located at the path, YAML's at ``line L, column C``.
"""

from __future__ import annotations

import os
import re
import stat
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from callbroker.network.parsing import NetworkError, Problem, written_text

__all__ = ["WrittenDecimal", "WrittenInt", "read_yaml"]


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when installed: 5x faster
    """Safe YAML with these changes: floats become ``Decimal`` (money never passes through binary
    floating point), numbers keep the text they were written as (:class:`WrittenInt`: a text value written
    unquoted, ``label: 0123``, is taken as written, not as YAML's octal 83), a key given twice in one
    mapping is a problem instead of a silent overwrite (a key merged in from an anchor and given again is
    YAML's override, not a repeat), and an unquoted date that isn't a real one (``2026-02-30``) is a YAML
    problem with its line, not a ``ValueError`` from inside the parser.

    Every key given twice is noted in ``repeated`` and reading goes on (the last one is kept), so that
    one run lists all of them and the file's other problems too.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.repeated: list[Problem] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        # Keys merged in from an anchor (``<<: *defaults``) may be given again: the one written here wins,
        # as YAML says. Only keys written twice in this mapping itself are an error.
        written = {id(key_node) for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge"}
        self.flatten_mapping(node)
        seen: dict[Any, tuple[yaml.Mark, Any]] = {}
        for key_node, _ in node.value:
            if id(key_node) not in written:
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                break
            if duplicate:
                mark, (first_mark, first) = key_node.start_mark, seen[key]
                # 010 and 8 are one key to YAML (octal): say so, or the reader looks for a second '8'
                spelling = (f", written {written_text(first)}: YAML reads both as {key}"
                            if written_text(first) != written_text(key) else "")
                self.repeated.append(Problem(
                    f"line {mark.line + 1}, column {mark.column + 1}",
                    f"not valid YAML: the key '{written_text(key)}' is given twice in one mapping "
                    f"(first on line {first_mark.line + 1}{spelling})"))
                continue
            seen[key] = key_node.start_mark, key
        return super().construct_mapping(node, deep=deep)

    def construct_real_date(self, node: yaml.ScalarNode) -> Any:
        try:
            return self.construct_yaml_timestamp(node)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(None, None, f"'{node.value}' is not a real date ({exc})",
                                                    node.start_mark) from None


class _Written:
    """A number as YAML read it, and the text it was written as (``written``): the shared part of
    :class:`WrittenInt` and :class:`WrittenDecimal`, whose ``_kind`` is the number's own type."""

    written: str
    _kind: type

    def __new__(cls, value, written: str):
        number = super().__new__(cls, value)
        number.written = written
        return number

    def __reduce__(self) -> tuple:  # copied and pickled with its text
        return type(self), (self._kind(self), self.written)


class WrittenInt(_Written, int):
    """A whole number as YAML read it, and the text it was written as (``written``): YAML 1.1 reads an
    unquoted ``0123`` as 83 (octal), ``12:30`` as 750 (base 60) and ``1_000`` as 1000, so a text value
    written that way (a label, a name) is taken as written, not as the number's digits, a number field
    written that way is refused (``parsing.plain_number``), and a problem quotes a number as written
    (``parsing.written_text``)."""

    _kind = int


class WrittenDecimal(_Written, Decimal):
    """A number with a fraction as YAML read it (a ``Decimal``), and the text it was written as
    (``written``: ``.5`` is 0.5, ``1.5e+3`` is 1.5E+3, ``1:30.5`` is 90.5 in base 60)."""

    _kind = Decimal


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    return WrittenInt(yaml.constructor.SafeConstructor.construct_yaml_int(loader, node), node.value)


def _construct_decimal(loader: _Loader, node: yaml.ScalarNode) -> Decimal | float:
    text = loader.construct_scalar(node).replace("_", "")
    if ":" in text:  # base 60, 1:30.5 is 90.5: exact too, and with its text (the loader refuses it)
        total = Decimal(0)
        for part in text.lstrip("+-").split(":"):
            total = total * 60 + Decimal(part)
        return WrittenDecimal(str(-total if text.startswith("-") else total), node.value)
    try:
        return WrittenDecimal(text, node.value)
    except InvalidOperation:  # .inf, .nan
        return yaml.constructor.SafeConstructor.construct_yaml_float(loader, node)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_real_date)

#: What YAML counts as a line break (its marks count lines with these too).
_YAML_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def read_yaml(path: str | os.PathLike) -> tuple[Any, list[Problem]]:
    """The file at ``path`` parsed as YAML (``None`` when it holds nothing), and the keys it gives twice in
    one mapping: problems that don't stop the reading (the rest of the file is read with the last of each
    repeated key), so that a checker can list them with the file's other problems.

    Raises :class:`NetworkError` when the file is missing, a directory, not a regular file (``/dev/zero``
    would never end), unreadable, not UTF-8 text or not YAML, each with its place.
    """
    path = Path(path)
    here = str(path)
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise NetworkError([Problem(here, "is a directory, not a file")])
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            raise NetworkError([Problem(here, "is not a file")])
        data = path.read_bytes()
    except FileNotFoundError:
        raise NetworkError([Problem(here, "no such file")]) from None
    except OSError as exc:  # permission denied, a loop of links …
        raise NetworkError([Problem(here, f"cannot read the file: {exc.strerror or exc}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, start = data.count(b"\n", 0, exc.start) + 1, data.rfind(b"\n", 0, exc.start) + 1
        raise NetworkError([Problem(
            f"line {line}, column {exc.start - start + 1}",
            f"not UTF-8 text (byte 0x{data[exc.start]:02X}): a network file is YAML, saved as UTF-8")]) from None
    loader = _Loader(text)
    try:
        return loader.get_single_data(), loader.repeated
    except yaml.reader.ReaderError as exc:
        raise NetworkError([_reader_problem(exc, text)]) from None
    except yaml.YAMLError as exc:
        raise NetworkError([*loader.repeated, _yaml_problem(exc)]) from None
    except RecursionError:
        raise NetworkError([Problem("", "not valid YAML: nested too deeply")]) from None
    finally:
        loader.dispose()


def _reader_problem(exc: yaml.reader.ReaderError, text: str) -> Problem:
    """A character YAML doesn't allow in a file (a NUL byte, a control character), at its line and column.

    The reader gives only a position, counted in characters by PyYAML's reader but in UTF-8 bytes by
    libyaml's: the character itself is found instead (the first one in the text is the one reported).
    """
    character = chr(exc.character) if isinstance(exc.character, int) else exc.character
    index = text.find(character)
    message = f"not valid YAML: the character U+{ord(character):04X} is not allowed in a YAML file; remove it"
    if index < 0:
        return Problem("", message)
    breaks = list(_YAML_BREAK.finditer(text, 0, index))
    column = index - (breaks[-1].end() if breaks else 0) + 1
    return Problem(f"line {len(breaks) + 1}, column {column}", message)


def _yaml_problem(exc: yaml.YAMLError) -> Problem:
    """``line 3, column 7: not valid YAML: <problem> (<context> that starts on line 2, column 1)``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).replace("\n", " ")
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    message = f"not valid YAML: {problem}"
    if context:
        where = (f" that starts on line {context_mark.line + 1}, column {context_mark.column + 1}"
                 if context_mark is not None and mark is not None and context_mark.line != mark.line else "")
        message += f" ({context}{where})"
    mark = mark or context_mark
    if mark is None:
        return Problem("", message)
    return Problem(f"line {mark.line + 1}, column {mark.column + 1}", message)
