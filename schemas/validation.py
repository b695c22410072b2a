"""The validation layer at the edge: documented bounds, the pydantic types that carry them, and the
strict JSON decoding every request body and free-form object goes through.

Shared by the API's request models (``serving/``) and the event intake (``schemas/events.py``),
so a number, a string or a free-form object means the same thing wherever it enters:

- **numbers** are finite and range-checked: money, quantities, ratings, weights, context
  features and scores each have a named type with the bounds of ``BOUNDS`` (documented in
  docs/hardening.md); a value outside them is refused, never clipped silently at the edge;
- **strings** are valid Unicode (no unpaired UTF-16 surrogates, which JSON escapes can spell but
  UTF-8 cannot encode) with a length limit;
- **free-form objects** (a rule's content, an experiment's payload, a bandit's params) are
  bounded in depth, node count, string length, number range and encoded size (``BoundedObject``);
- **bodies** are decoded by ``strict_loads`` (orjson: no ``NaN``/``Infinity`` literals, no number
  beyond the double range, no lone surrogate escape, depth <= 1,024).

Why not a schema library (jsonschema, fastjsonschema): the request models are pydantic already,
and the checks above are about values, not shapes; orjson already rejects what JSON allows and
the system cannot hold, at C speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from aura.errors import AuraError

# ---------------------------------------------------------------------------------------------
# Bounds (one place; docs/hardening.md lists them)

MAX_MONEY = 1e9                  # a unit price, an order value, an item price
MAX_QUANTITY = 1_000_000         # units of one order line
MAX_RATING = 1e6                 # |value| of a rating or a custom event's value
MAX_WEIGHT = 1e6                 # a blend weight, a reward, a bandit parameter
MAX_FEATURE = 1e6                # |x| of a context feature given to a contextual bandit
MAX_NUMBER = 1e15                # any other number inside a free-form object
MAX_ID = 256                     # an id (user, item, event, experiment ...)
MAX_SHORT = 1024                 # a short text (page, category, label)
MAX_TEXT = 65_536                # a long text (description, content body)
MAX_OBJECT_DEPTH = 8             # nesting of a free-form object
MAX_OBJECT_NODES = 2_000         # values and keys in a free-form object
MAX_OBJECT_BYTES = 64 * 1024     # a free-form object, JSON-encoded
MAX_BODY_DEPTH = 32              # nesting of a stored configuration document (BODY_LIMITS)

BOUNDS: dict[str, str] = {
    "Money": f"0 <= x <= {MAX_MONEY:g}, finite",
    "Quantity": f"1 <= n <= {MAX_QUANTITY}",
    "Rating": f"|x| <= {MAX_RATING:g}, finite",
    "Weight": f"0 <= x <= {MAX_WEIGHT:g}, finite",
    "Feature": f"|x| <= {MAX_FEATURE:g}, finite",
    "free-form number": f"|x| <= {MAX_NUMBER:g}, finite",
    "Id": f"1 to {MAX_ID} characters, valid Unicode",
    "ShortText": f"up to {MAX_SHORT} characters, valid Unicode",
    "LongText": f"up to {MAX_TEXT} characters, valid Unicode",
    "BoundedObject": f"depth <= {MAX_OBJECT_DEPTH}, <= {MAX_OBJECT_NODES} nodes, <= {MAX_OBJECT_BYTES} bytes "
                     "as JSON, strings valid Unicode <= 4096 characters, numbers free-form",
    "request body": "JSON without NaN/Infinity or numbers beyond the double range, no lone surrogates, depth "
                    "<= 1024 (orjson)",
}


class InvalidValue(AuraError, ValueError):
    """A value outside the edge's bounds; ``loc`` is the path inside the checked value."""

    def __init__(self, msg: str, loc: tuple[str | int, ...] = (), kind: str = "value_error") -> None:
        super().__init__(msg)
        self.msg = msg
        self.loc = loc
        self.kind = kind

    def detail(self, prefix: tuple[str | int, ...] = ("body",)) -> list[dict[str, Any]]:
        """A FastAPI-style 422 ``detail`` (serialisable: no echoed input)."""
        return [{"loc": [*prefix, *self.loc], "msg": self.msg, "type": self.kind}]


# ---------------------------------------------------------------------------------------------
# Scalars


def valid_text(value: str) -> str:
    """``value`` if it encodes as UTF-8 (no unpaired surrogates); raises InvalidValue otherwise."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidValue(f"not valid Unicode text: unpaired surrogate at character {exc.start}",
                           kind="string_unicode") from None
    return value


def _valid_text(value: str) -> str:
    try:
        return valid_text(value)
    except InvalidValue as exc:
        raise PydanticCustomError(exc.kind, "{msg}", {"msg": exc.msg}) from None


def finite(value: float) -> float:
    if not math.isfinite(value):
        raise InvalidValue("must be a finite number", kind="finite_number")
    return value


def _text(max_length: int, min_length: int = 0) -> Any:
    return Annotated[str, Field(min_length=min_length, max_length=max_length), AfterValidator(_valid_text)]


Id = _text(MAX_ID, 1)
ShortText = _text(MAX_SHORT)
LongText = _text(MAX_TEXT)
Money = Annotated[float, Field(ge=0, le=MAX_MONEY, allow_inf_nan=False)]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY)]
Rating = Annotated[float, Field(ge=-MAX_RATING, le=MAX_RATING, allow_inf_nan=False)]
Weight = Annotated[float, Field(ge=0, le=MAX_WEIGHT, allow_inf_nan=False)]
Feature = Annotated[float, Field(ge=-MAX_FEATURE, le=MAX_FEATURE, allow_inf_nan=False)]
FeatureInt = Annotated[int, Field(ge=-int(MAX_FEATURE), le=int(MAX_FEATURE))]
# a context value a caller may pass to evaluation, assignment or a bandit: a short text, a bounded
# number or a flag (bool first: pydantic would read true as 1 otherwise)
ContextValue = bool | FeatureInt | Feature | ShortText
ContextKey = _text(128, 1)
Context = Annotated[dict[ContextKey, ContextValue], Field(max_length=64)]  # type: ignore[valid-type]


# ---------------------------------------------------------------------------------------------
# Free-form objects


@dataclass(frozen=True, slots=True)
class Limits:
    depth: int = MAX_OBJECT_DEPTH
    nodes: int = MAX_OBJECT_NODES
    string: int = 4096
    number: float = MAX_NUMBER
    encoded: int | None = MAX_OBJECT_BYTES


OBJECT_LIMITS = Limits()
BODY_LIMITS = Limits(depth=MAX_BODY_DEPTH, nodes=10_000_000, string=10_000_000, number=math.inf, encoded=None)


def check_json(value: Any, limits: Limits = OBJECT_LIMITS) -> Any:
    """``value`` if it is plain JSON within ``limits``; raises InvalidValue naming the path."""
    count = 0
    stack: list[tuple[Any, tuple[str | int, ...], int]] = [(value, (), 0)]
    while stack:
        node, loc, depth = stack.pop()
        count += 1
        if count > limits.nodes:
            raise InvalidValue(f"more than {limits.nodes} values", loc, "too_large")
        if node is None or isinstance(node, bool):
            continue
        if isinstance(node, str):
            if len(node) > limits.string:
                raise InvalidValue(f"string longer than {limits.string} characters", loc, "string_too_long")
            try:
                valid_text(node)
            except InvalidValue as exc:
                raise InvalidValue(exc.msg, loc, exc.kind) from None
        elif isinstance(node, int | float):
            if not math.isfinite(node) or abs(node) > limits.number:
                raise InvalidValue(f"number must be finite and within +-{limits.number:g}", loc, "finite_number")
        elif isinstance(node, dict | list):
            if depth >= limits.depth:
                raise InvalidValue(f"nested deeper than {limits.depth} levels", loc, "too_deep")
            if isinstance(node, dict):
                for k, v in node.items():
                    if not isinstance(k, str):
                        raise InvalidValue("object keys must be strings", loc, "type_error")
                    count += 1
                    if len(k) > limits.string:
                        raise InvalidValue(f"key longer than {limits.string} characters", (*loc, k[:64]),
                                           "string_too_long")
                    try:
                        valid_text(k)
                    except InvalidValue as exc:
                        raise InvalidValue("object key: " + exc.msg, loc, exc.kind) from None
                    stack.append((v, (*loc, k), depth + 1))
            else:
                stack.extend((v, (*loc, i), depth + 1) for i, v in enumerate(node))
        else:
            raise InvalidValue(f"{type(node).__name__} is not a JSON value", loc, "type_error")
    if limits.encoded is not None:
        size = len(orjson.dumps(value))
        if size > limits.encoded:
            raise InvalidValue(f"{size} bytes as JSON; at most {limits.encoded}", (), "too_large")
    return value


def _bounded(value: Any) -> Any:
    try:
        return check_json(value, OBJECT_LIMITS)
    except InvalidValue as exc:  # pydantic's loc ends at the field: the path inside goes in the message
        where = ".".join(map(str, exc.loc))
        raise PydanticCustomError(exc.kind, "{where}{msg}",
                                  {"where": f"{where}: " if where else "", "msg": exc.msg}) from None


BoundedObject = Annotated[dict[str, Any], AfterValidator(_bounded)]
BoundedValue = Annotated[Any, AfterValidator(_bounded)]


# ---------------------------------------------------------------------------------------------
# Bodies


def strict_loads(body: bytes | str, limits: Limits | None = None) -> Any:
    """A JSON body decoded strictly: orjson refuses ``NaN``/``Infinity``, numbers that overflow a
    double, invalid UTF-8, lone surrogate escapes and nesting deeper than 1,024; ``limits``, when
    given, are then checked by ``check_json`` (a walk in Python: ~6x the decode, so request bodies
    are not walked; their models bound them field by field)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidValue(f"invalid JSON: {exc.msg} at character {exc.pos}", (), "json_invalid") from None
    return value if limits is None else check_json(value, limits)
