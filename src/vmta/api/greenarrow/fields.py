"""Strict reading of GreenArrow request documents (contract §2.3).

A ``Fields`` collects one sentence per problem, naming the field path, so that every
problem in a request is reported at once. It also remembers the record's name and the
references it read well, so that when the document is refused the store can still say
whether that name is taken and those references exist (contract §2.1). Types are strict
JSON: ``"25"`` is not an integer and ``true`` is not a number. Pure Python, no framework.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from vmta.domain.config.bounds import MAX_INTEGER, control_character_problem
from vmta.domain.config.virtual_mta import Ref
from vmta.domain.errors import NotFound, PartialRecord, ValidationFailed

JsonObject = dict[str, Any]
Record = TypeVar("Record")
_MISSING = object()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "a hash"


def kind_of(value: Any) -> str:
    """How a problem sentence names the JSON type of ``value`` ("a string", "null")."""
    return _kind(value)


class Fields:
    """Reads values out of JSON objects, collecting problems instead of raising."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.record_name: str | None = None
        self.references: dict[str, Ref] = {}  # field path -> reference, in reading order

    def problem(self, path: str, sentence: str) -> None:
        self.problems.append(f"{path} {sentence}")

    @property
    def ok(self) -> bool:
        return not self.problems

    def check(self) -> None:
        """Raise ValidationFailed with every problem so far, carrying the name and the
        references that were read well; do nothing when there is no problem."""
        if self.problems:
            partial = PartialRecord(name=self.record_name, references=dict(self.references))
            raise ValidationFailed(self.problems, partial)

    def name(self, obj: JsonObject, *, rules: Callable[[str], list[str]]) -> str | None:
        """The record's required top-level ``name``, remembered when it is well formed."""
        value = self.string(obj, "name", "", rules=rules)
        self.record_name = value
        return value

    def known(self, obj: JsonObject, path: str, allowed: Iterable[str]) -> None:
        """Report every key of ``obj`` not in ``allowed`` (contract §2.3: unknown fields)."""
        allowed_set = set(allowed)
        for key in obj:
            if key not in allowed_set:
                self.problem(_join(path, key), "is not a known field")

    def _typed(
        self,
        obj: JsonObject,
        key: str,
        path: str,
        kind: type,
        described: str,
        *,
        required: bool,
        nullable: bool,
    ) -> Any:
        """The value of ``key`` when it is present and of ``kind``; otherwise None, with
        the problem noted: absent but required, null but not nullable, or another type."""
        full = _join(path, key)
        value = obj.get(key, _MISSING)
        if value is _MISSING:
            if required:
                self.problem(full, "is required")
            return None
        if value is None:
            if not nullable:
                self.problem(full, f"must be {described}, not null")
            return None
        if not isinstance(value, kind):
            self.problem(full, f"must be {described}, not {_kind(value)}")
            return None
        return value

    def hash(
        self, obj: JsonObject, key: str, path: str, *, required: bool = True, nullable: bool = False
    ) -> JsonObject | None:
        value: JsonObject | None = self._typed(
            obj, key, path, dict, "a hash", required=required, nullable=nullable
        )
        return value

    def array(
        self, obj: JsonObject, key: str, path: str, *, required: bool = True
    ) -> list[Any] | None:
        value: list[Any] | None = self._typed(
            obj, key, path, list, "an array", required=required, nullable=False
        )
        return value

    def string(
        self,
        obj: JsonObject,
        key: str,
        path: str,
        *,
        required: bool = True,
        nullable: bool = False,
        max_length: int | None = None,
        rules: Callable[[str], list[str]] | None = None,
    ) -> str | None:
        full = _join(path, key)
        value: str | None = self._typed(
            obj, key, path, str, "a string", required=required, nullable=nullable
        )
        if value is None:
            return None
        unprintable = control_character_problem(value)
        if unprintable is not None:
            self.problem(full, unprintable)
            return None
        if max_length is not None and len(value) > max_length:
            self.problem(full, f"may be a maximum of {max_length} characters in length")
            return None
        if rules is not None:
            broken = rules(value)
            for sentence in broken:
                self.problem(full, sentence)
            if broken:
                return None
        return value

    def integer(
        self,
        obj: JsonObject,
        key: str,
        path: str,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
        required: bool = True,
    ) -> int | None:
        full = _join(path, key)
        value = obj.get(key, _MISSING)
        if value is _MISSING:
            if required:
                self.problem(full, "is required")
            return None
        # Every stored integer fits every database (domain.bounds), whatever the field.
        highest = MAX_INTEGER if maximum is None else min(maximum, MAX_INTEGER)
        in_range = (
            isinstance(value, int)
            and not isinstance(value, bool)
            and (minimum is None or value >= minimum)
            and value <= highest
        )
        if not in_range:
            self.problem(full, _integer_rule(minimum, highest))
            return None
        return int(value)

    def boolean(self, obj: JsonObject, key: str, path: str, *, default: bool) -> bool:
        value = obj.get(key, _MISSING)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.problem(_join(path, key), f"must be true or false, not {_kind(value)}")
            return default
        return value

    def positive_number(self, obj: JsonObject, key: str, path: str) -> float | None:
        full = _join(path, key)
        value = obj.get(key, _MISSING)
        if value is _MISSING:
            self.problem(full, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            self.problem(full, "must be a number greater than 0")
            return None
        try:
            number = float(value)
        except OverflowError:  # an integer literal too large for a float
            number = math.inf
        if not math.isfinite(number):
            # json.loads reads 1e400 (valid JSON) as inf, which JSON cannot write back.
            self.problem(full, "must be a finite number greater than 0")
            return None
        return number

    def ref(
        self, obj: JsonObject, key: str, path: str, *, required: bool = False, nullable: bool = True
    ) -> Ref | None:
        """A reference ``{"id": N}`` or ``{"name": "..."}``; ``id`` wins, ``type`` is ignored."""
        full = _join(path, key)
        value = self.hash(obj, key, path, required=required, nullable=nullable)
        if value is None:
            return None
        self.known(value, full, ("id", "name", "type"))
        ref_id = value.get("id")
        ref_name = value.get("name")
        ref: Ref
        if ref_id is not None:
            if isinstance(ref_id, bool) or not isinstance(ref_id, int):
                self.problem(_join(full, "id"), "must be an integer")
                return None
            ref = Ref(id=ref_id)
        elif ref_name is not None:
            if not isinstance(ref_name, str):
                self.problem(_join(full, "name"), "must be a string")
                return None
            unprintable = control_character_problem(ref_name)
            if unprintable is not None:
                self.problem(_join(full, "name"), unprintable)
                return None
            ref = Ref(name=ref_name)
        else:
            self.problem(full, "must give an id or a name")
            return None
        self.references[full] = ref
        return ref


def parse_record_id(raw: str) -> int:
    """The id in a path (``/ip_addresses/{record_id}``); anything else names no record."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10 or int(raw) > MAX_INTEGER:
        raise NotFound(f"No record with id {raw!r}.")
    return int(raw)


def _integer_rule(minimum: int | None, maximum: int) -> str:
    if minimum is not None:
        return f"must be an integer from {minimum} to {maximum}"
    return f"must be an integer at most {maximum}"


def parse_record(
    parse: Callable[[JsonObject], Record],
    doc: JsonObject,
    *,
    store_problems: Callable[[PartialRecord], list[str]],
) -> Record:
    """``parse(doc)``. When the document breaks field rules, what only the store can tell
    of the part that was read (a taken name, a reference to nothing) is reported with
    them: every problem of a request at once (contract §2.1), field problems first."""
    try:
        return parse(doc)
    except ValidationFailed as refused:
        if refused.partial is None:
            raise
        more = store_problems(refused.partial)
        raise ValidationFailed([*refused.messages, *more]) from None


def merge_patch(current: JsonObject, patch: JsonObject, atomic: Iterable[str] = ()) -> JsonObject:
    """Apply a PUT body to the current record (contract §2.3).

    Absent keys keep their values; a nested hash merges key by key; an array, a scalar or
    an explicit null replaces. Keys named in ``atomic`` (references such as ``redirect``)
    are replaced whole: merging ``{"name": "b"}`` into ``{"id": 1, "name": "a"}`` would
    otherwise keep id 1 and, since id wins, silently ignore the new name.
    """
    atomic_keys = set(atomic)
    merged = copy.deepcopy(current)
    for key, value in patch.items():
        old = merged.get(key)
        if key not in atomic_keys and isinstance(value, dict) and isinstance(old, dict):
            merged[key] = merge_patch(old, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
