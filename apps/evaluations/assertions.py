"""What a case's answer must satisfy: the assertion types, their validation, and the checks.

An assertion is a JSON object ``{"type": ..., ...}``. The types and their fields:

=================  ==========================================================================
``equals``         ``value`` (text; default: the case's expected output), ``ignore_case``
                   (false). Both sides are stripped of surrounding whitespace.
``contains``       ``value`` (text) or ``values`` (a list: every one must appear); case matters.
``icontains``      the same, ignoring case.
``regex``          ``pattern`` (a Python regular expression, searched anywhere in the output),
                   ``flags`` (letters among ``i`` ignore case, ``m`` multi-line, ``s`` dot
                   matches newline, ``x`` verbose).
``is_json``        the whole output (surrounding whitespace aside) parses as JSON.
``json_schema``    ``schema`` (a JSON Schema, draft 2020-12): the output parses as JSON and is
                   valid against it.
``similarity``     ``threshold`` (0..1, default 0.8), ``value`` (default: the expected output),
                   ``method``: ``lexical`` (default) or ``semantic`` with ``model_version`` (the
                   id of a model version on an OpenAI-compatible provider, whose embeddings
                   endpoint is called). Passes when the similarity is ≥ the threshold.
``max_latency_ms`` ``value`` (a whole number of milliseconds > 0): the call took at most that.
``max_cost``       ``value`` (a number ≥ 0, in the price table's currency): the call cost at most
                   that.
``must_not_contain`` ``value`` or ``values``: none of them appears; case is ignored unless
                   ``case_sensitive`` is true.
``llm_judge``      ``rubric`` (text), ``model_version`` (the judge model version's id),
                   ``threshold`` (0..1, default 0.7): a judge model grades the output against the
                   rubric from 0 to 1 through the call pipeline; passes when the score is ≥ the
                   threshold.
=================  ==========================================================================

Lexical similarity is the cosine of the two texts' word-count vectors: words are runs of
letters, digits and underscores (``\\w+``), lower-cased; two empty texts are 1.0, one empty
text against another 0.0. It is deterministic and symmetric, 1.0 for the same words in any
order, and needs no model. Semantic similarity is the cosine of the two texts' embeddings,
clamped to 0..1.

``validate_assertions`` is the one check of an assertion list (at save time): it returns a
normalised copy or raises ``ApplicationError`` naming the bad field, as
``assertions[i].field``. ``run_checks`` is what a run calls per case: one ``Check`` per
assertion, never an exception for a bad answer (a failing or erroring assertion is a failed
check with the reason in ``detail``).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import jsonschema

from apps.core.exceptions import ApplicationError

if TYPE_CHECKING:
    from .judging import Judge

ASSERTION_TYPES: tuple[str, ...] = (
    "equals",
    "contains",
    "icontains",
    "regex",
    "is_json",
    "json_schema",
    "similarity",
    "max_latency_ms",
    "max_cost",
    "must_not_contain",
    "llm_judge",
)

MAX_ASSERTIONS = 50
MAX_TEXT = 20_000  # characters of a value, a pattern or a rubric
MAX_VALUES = 100  # phrases of a contains / must_not_contain
MAX_SCHEMA_BYTES = 50_000
DETAIL_EXCERPT = 300  # characters of an output or an answer quoted in a check's detail
DEFAULT_SIMILARITY_THRESHOLD = 0.8
DEFAULT_JUDGE_THRESHOLD = 0.7
SIMILARITY_METHODS = ("lexical", "semantic")
REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")
_WORD = re.compile(r"\w+")

# The fields each type takes (besides ``type``), for the unknown-field check.
FIELDS: dict[str, frozenset[str]] = {
    "equals": frozenset({"value", "ignore_case"}),
    "contains": frozenset({"value", "values"}),
    "icontains": frozenset({"value", "values"}),
    "regex": frozenset({"pattern", "flags"}),
    "is_json": frozenset(),
    "json_schema": frozenset({"schema"}),
    "similarity": frozenset({"value", "threshold", "method", "model_version"}),
    "max_latency_ms": frozenset({"value"}),
    "max_cost": frozenset({"value"}),
    "must_not_contain": frozenset({"value", "values", "case_sensitive"}),
    "llm_judge": frozenset({"rubric", "model_version", "threshold"}),
}
# Types whose ``value`` defaults to the case's expected output.
USES_EXPECTED = frozenset({"equals", "similarity"})


# ---- validation ---------------------------------------------------------------------------


class _Invalid(Exception):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field_name = field_name
        self.message = message


def _text(value: Any, name: str, *, required: bool = True, what: str = "text") -> str:
    if not isinstance(value, str):
        raise _Invalid(name, f"{name} must be {what}.")
    if required and not value.strip():
        raise _Invalid(name, f"{name} cannot be empty.")
    if len(value) > MAX_TEXT:
        raise _Invalid(name, f"{name} is longer than {MAX_TEXT:,} characters.")
    if "\x00" in value:
        raise _Invalid(name, f"{name} cannot contain NUL characters.")
    return value


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(name, f"{name} must be true or false.")
    return value


def _threshold(value: Any, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Invalid("threshold", "threshold must be a number between 0 and 1.")
    if not 0 <= value <= 1:
        raise _Invalid("threshold", f"threshold must be between 0 and 1, not {value}.")
    return float(value)


def _model_version_id(value: Any, kind: str) -> str:
    if value in (None, ""):
        raise _Invalid("model_version", f"{kind} needs a model_version (a model version id).")
    if not isinstance(value, str) or not _UUID.match(value.strip()):
        raise _Invalid("model_version", "model_version must be a model version id (a UUID).")
    return value.strip().lower()


def _phrases(spec: dict, kind: str) -> dict:
    """``value`` (one phrase) or ``values`` (a list of phrases), exactly one of them."""
    has_value, has_values = "value" in spec, "values" in spec
    if has_value and has_values:
        raise _Invalid("values", f"{kind} takes value or values, not both.")
    if has_value:
        return {"value": _text(spec["value"], "value")}
    if not has_values:
        raise _Invalid("value", f"{kind} needs a value (or a list of values).")
    values = spec["values"]
    if not isinstance(values, list) or not values:
        raise _Invalid("values", "values must be a non-empty list of texts.")
    if len(values) > MAX_VALUES:
        raise _Invalid("values", f"values holds at most {MAX_VALUES} phrases.")
    cleaned = []
    for j, item in enumerate(values):
        cleaned.append(_text(item, f"values[{j}]"))
    return {"values": cleaned}


def _compile(pattern: str, flags: str) -> re.Pattern:
    value = 0
    for letter in flags:
        value |= REGEX_FLAGS[letter]
    return re.compile(pattern, value)


def _check_one(spec: Any) -> dict:
    if not isinstance(spec, dict):
        raise _Invalid("", 'An assertion must be an object such as {"type": "contains", ...}.')
    kind = spec.get("type")
    if kind is None:
        raise _Invalid("type", f"An assertion needs a type: one of {', '.join(ASSERTION_TYPES)}.")
    if not isinstance(kind, str) or kind not in ASSERTION_TYPES:
        raise _Invalid(
            "type", f"Unknown assertion type {kind!r}; one of {', '.join(ASSERTION_TYPES)}."
        )
    unknown = sorted(set(spec) - FIELDS[kind] - {"type"})
    if unknown:
        raise _Invalid(
            unknown[0],
            f"{kind} takes no field {unknown[0]!r}"
            + (f"; its fields: {', '.join(sorted(FIELDS[kind]))}." if FIELDS[kind] else "."),
        )
    out: dict[str, Any] = {"type": kind}
    if kind == "equals":
        if "value" in spec:
            out["value"] = _text(spec["value"], "value", required=False)
        if "ignore_case" in spec:
            out["ignore_case"] = _bool(spec["ignore_case"], "ignore_case")
    elif kind in ("contains", "icontains"):
        out.update(_phrases(spec, kind))
    elif kind == "must_not_contain":
        out.update(_phrases(spec, kind))
        if "case_sensitive" in spec:
            out["case_sensitive"] = _bool(spec["case_sensitive"], "case_sensitive")
    elif kind == "regex":
        if "pattern" not in spec:
            raise _Invalid("pattern", "regex needs a pattern.")
        pattern = _text(spec["pattern"], "pattern")
        flags = spec.get("flags", "")
        if not isinstance(flags, str) or any(f not in REGEX_FLAGS for f in flags):
            raise _Invalid(
                "flags", f'flags are letters among {", ".join(REGEX_FLAGS)} (such as "im").'
            )
        try:
            _compile(pattern, flags)
        except re.error as exc:
            where = f" at position {exc.pos}" if exc.pos is not None else ""
            raise _Invalid(
                "pattern", f"Not a valid regular expression: {exc.msg}{where}."
            ) from None
        out["pattern"] = pattern
        if flags:
            out["flags"] = "".join(sorted(set(flags)))
    elif kind == "json_schema":
        if "schema" not in spec:
            raise _Invalid("schema", "json_schema needs a schema (a JSON Schema object).")
        schema = spec["schema"]
        if not isinstance(schema, dict | bool):
            raise _Invalid("schema", "schema must be a JSON Schema (an object).")
        if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
            raise _Invalid("schema", "schema is too large.")
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            path = "/".join(str(p) for p in exc.path)
            raise _Invalid(
                "schema",
                f"Not a valid JSON Schema: {exc.message}" + (f" (at {path})" if path else "") + ".",
            ) from None
        out["schema"] = schema
    elif kind == "similarity":
        method = spec.get("method", "lexical")
        if method not in SIMILARITY_METHODS:
            raise _Invalid("method", f"method is one of {', '.join(SIMILARITY_METHODS)}.")
        if "value" in spec:
            out["value"] = _text(spec["value"], "value", required=False)
        out["threshold"] = _threshold(spec.get("threshold"), DEFAULT_SIMILARITY_THRESHOLD)
        out["method"] = method
        if method == "semantic":
            out["model_version"] = _model_version_id(
                spec.get("model_version"), "semantic similarity"
            )
        elif spec.get("model_version") not in (None, ""):
            raise _Invalid("model_version", "model_version is for method semantic only.")
    elif kind == "max_latency_ms":
        value = spec.get("value")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise _Invalid("value", "max_latency_ms needs a value: a whole number of ms > 0.")
        if value > 24 * 3600 * 1000:
            raise _Invalid("value", "max_latency_ms is at most a day (86400000 ms).")
        out["value"] = value
    elif kind == "max_cost":
        value = spec.get("value")
        if value is None:
            raise _Invalid("value", "max_cost needs a value: a number ≥ 0.")
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _Invalid("value", "max_cost value must be a number ≥ 0.")
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            raise _Invalid("value", "max_cost value must be a number ≥ 0.") from None
        if not amount.is_finite() or amount < 0:
            raise _Invalid("value", "max_cost value must be a number ≥ 0.")
        out["value"] = value if isinstance(value, int | float) else str(amount)
    elif kind == "llm_judge":
        if "rubric" not in spec:
            raise _Invalid("rubric", "llm_judge needs a rubric: what a good answer does.")
        out["rubric"] = _text(spec["rubric"], "rubric")
        out["model_version"] = _model_version_id(spec.get("model_version"), "llm_judge")
        out["threshold"] = _threshold(spec.get("threshold"), DEFAULT_JUDGE_THRESHOLD)
    return out


def validate_assertions(assertions: Any, *, where: str = "assertions") -> list[dict]:
    """A normalised copy of ``assertions``, or ``ApplicationError("invalid", ...)`` naming the
    first bad one as ``{where}[i].field`` (bad regex, bad JSON Schema, threshold outside 0..1,
    unknown type or field, missing value, llm_judge without a rubric or a model version...).

    Only the shape is checked here; that a ``model_version`` exists, belongs to the suite's
    team and (for semantic similarity) has an embeddings endpoint is checked by the service
    that saves the case."""
    if assertions in (None, ""):
        return []
    if not isinstance(assertions, list):
        raise ApplicationError(
            "invalid",
            f'{where} must be a list of assertions such as [{{"type": "contains", "value": "…"}}].',
            {where: ["Not a list."]},
        )
    if len(assertions) > MAX_ASSERTIONS:
        raise ApplicationError(
            "invalid",
            f"{where} holds at most {MAX_ASSERTIONS} assertions.",
            {where: ["Too many."]},
        )
    cleaned = []
    for i, spec in enumerate(assertions):
        try:
            cleaned.append(_check_one(spec))
        except _Invalid as exc:
            name = f"{where}[{i}]" + (f".{exc.field_name}" if exc.field_name else "")
            raise ApplicationError(
                "invalid", f"{name}: {exc.message}", {name: [exc.message]}
            ) from None
    return cleaned


# ---- description (for people) -------------------------------------------------------------


def _quoted(spec: dict) -> str:
    values = spec.get("values") or [spec.get("value", "")]
    shown = ", ".join(f"“{_short(v, 60)}”" for v in values[:5])
    return shown + (f" and {len(values) - 5} more" if len(values) > 5 else "")


def _short(text: str, limit: int = DETAIL_EXCERPT) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(spec: dict, *, labels: dict[str, str] | None = None) -> str:
    """One assertion in words (``labels`` names model versions by id)."""
    kind = spec.get("type")
    labels = labels or {}

    def model(mv: Any) -> str:
        return labels.get(str(mv), f"model version {str(mv)[:8]}")

    target = f"“{_short(spec['value'], 60)}”" if "value" in spec else "the expected output"
    if kind == "equals":
        return f"equals {target}" + (" (ignoring case)" if spec.get("ignore_case") else "")
    if kind == "contains":
        return f"contains {_quoted(spec)}"
    if kind == "icontains":
        return f"contains {_quoted(spec)} (any case)"
    if kind == "must_not_contain":
        case = "" if spec.get("case_sensitive") else " (any case)"
        return f"does not contain {_quoted(spec)}{case}"
    if kind == "regex":
        return f"matches /{_short(spec.get('pattern', ''), 80)}/{spec.get('flags', '')}"
    if kind == "is_json":
        return "is valid JSON"
    if kind == "json_schema":
        return "is JSON valid against a JSON Schema"
    if kind == "similarity":
        how = (
            f"semantically similar (embeddings of {model(spec.get('model_version'))})"
            if spec.get("method") == "semantic"
            else "lexically similar"
        )
        return (
            f"{how} to {target}, at least {spec.get('threshold', DEFAULT_SIMILARITY_THRESHOLD):g}"
        )
    if kind == "max_latency_ms":
        return f"answers within {spec.get('value')} ms"
    if kind == "max_cost":
        return f"costs at most {spec.get('value')}"
    if kind == "llm_judge":
        threshold = spec.get("threshold", DEFAULT_JUDGE_THRESHOLD)
        rubric = _short(spec.get("rubric", ""), 120)
        return f"graded by {model(spec.get('model_version'))} at least {threshold:g} on: “{rubric}”"
    return f"unknown assertion {kind!r}"


# ---- checks -------------------------------------------------------------------------------


@dataclass
class Observation:
    """What a case produced: the answer and what it cost."""

    output: str
    expected: str = ""
    latency_ms: int = 0
    cost: Decimal = Decimal(0)
    variables: dict = field(default_factory=dict)


@dataclass
class Check:
    type: str
    passed: bool
    detail: str = ""
    score: float | None = None

    def as_dict(self) -> dict:
        return {
            "type": self.type,
            "passed": self.passed,
            "detail": self.detail,
            "score": self.score,
        }


def lexical_similarity(a: str, b: str) -> float:
    """Cosine of the word-count vectors of ``a`` and ``b`` (``\\w+`` words, lower-cased)."""
    left = Counter(_WORD.findall(a.lower()))
    right = Counter(_WORD.findall(b.lower()))
    if not left and not right:
        return 1.0
    if not left or not right:
        return 0.0
    dot = sum(count * right[word] for word, count in left.items())
    norm = math.sqrt(sum(c * c for c in left.values())) * math.sqrt(
        sum(c * c for c in right.values())
    )
    return max(0.0, min(1.0, dot / norm))


def cosine(a: list[float], b: list[float]) -> float:
    """Cosine of two vectors, clamped to 0..1 (0 for a zero vector or different lengths)."""
    if len(a) != len(b) or not a:
        return 0.0
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    if norm == 0:
        return 0.0
    return max(0.0, min(1.0, dot / norm))


def _values(spec: dict) -> list[str]:
    if "values" in spec:
        return [str(v) for v in spec["values"]]
    return [str(spec.get("value", ""))]


def _parse_json(output: str) -> tuple[Any, str]:
    """(the parsed value, "") or (None, why it is not JSON)."""
    text = output.strip()
    if not text:
        return None, "the output is empty, not JSON"
    try:
        return json.loads(text), ""
    except json.JSONDecodeError as exc:
        return None, f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"


def _check(spec: dict, observed: Observation, judge: Judge | None) -> Check:
    kind = spec.get("type", "")
    output = observed.output or ""
    if kind == "equals":
        want = str(spec["value"]) if "value" in spec else observed.expected or ""
        got, exp = output.strip(), want.strip()
        if spec.get("ignore_case"):
            got, exp = got.casefold(), exp.casefold()
        if got == exp:
            return Check(kind, True, "the output equals the expected text")
        return Check(
            kind, False, f"expected “{_short(want.strip())}”, got “{_short(output.strip())}”"
        )
    if kind in ("contains", "icontains"):
        fold = kind == "icontains"
        haystack = output.casefold() if fold else output
        missing = [v for v in _values(spec) if (v.casefold() if fold else v) not in haystack]
        if missing:
            return Check(kind, False, "missing " + ", ".join(f"“{_short(v, 80)}”" for v in missing))
        return Check(
            kind, True, "contains " + ", ".join(f"“{_short(v, 80)}”" for v in _values(spec))
        )
    if kind == "must_not_contain":
        sensitive = bool(spec.get("case_sensitive"))
        haystack = output if sensitive else output.casefold()
        found = [v for v in _values(spec) if (v if sensitive else v.casefold()) in haystack]
        if found:
            return Check(kind, False, "contains " + ", ".join(f"“{_short(v, 80)}”" for v in found))
        return Check(kind, True, f"none of {len(_values(spec))} forbidden phrase(s) appears")
    if kind == "regex":
        pattern = _compile(str(spec.get("pattern", "")), str(spec.get("flags", "")))
        match = pattern.search(output)
        if match:
            return Check(kind, True, f"matched “{_short(match.group(0), 80)}”")
        return Check(kind, False, f"no match for /{_short(pattern.pattern, 80)}/ in the output")
    if kind == "is_json":
        _, problem = _parse_json(output)
        return Check(kind, not problem, problem or "the output is valid JSON")
    if kind == "json_schema":
        value, problem = _parse_json(output)
        if problem:
            return Check(kind, False, problem)
        error = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(spec.get("schema", {})).iter_errors(value)
        )
        if error is None:
            return Check(kind, True, "the output is valid against the schema")
        path = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return Check(kind, False, f"schema violation at {path}: {_short(error.message)}")
    if kind == "similarity":
        want = str(spec["value"]) if "value" in spec else observed.expected or ""
        threshold = float(spec.get("threshold", DEFAULT_SIMILARITY_THRESHOLD))
        if spec.get("method") == "semantic":
            if judge is None:
                return Check(kind, False, "semantic similarity needs an embeddings call: no judge")
            left, right = judge.embed([output, want], model_version_id=str(spec["model_version"]))
            score, how = cosine(left, right), "semantic"
        else:
            score, how = lexical_similarity(output, want), "lexical"
        passed = score >= threshold
        sign = "≥" if passed else "<"
        return Check(
            kind, passed, f"{how} similarity {score:.3f} {sign} threshold {threshold:g}", score
        )
    if kind == "max_latency_ms":
        limit = int(spec["value"])
        passed = observed.latency_ms <= limit
        return Check(
            kind,
            passed,
            f"took {observed.latency_ms} ms ({'within' if passed else 'over'} {limit} ms)",
        )
    if kind == "max_cost":
        limit = Decimal(str(spec["value"]))
        cost = Decimal(str(observed.cost or 0))
        passed = cost <= limit
        return Check(
            kind, passed, f"cost {cost.normalize():f} ({'within' if passed else 'over'} {limit:f})"
        )
    if kind == "llm_judge":
        if judge is None:
            return Check(kind, False, "llm_judge needs a judge model call: no judge")
        threshold = float(spec.get("threshold", DEFAULT_JUDGE_THRESHOLD))
        score, reason = judge.score(
            rubric=str(spec.get("rubric", "")),
            output=output,
            expected=observed.expected or "",
            variables=observed.variables or {},
            model_version_id=str(spec.get("model_version", "")),
        )
        passed = score >= threshold
        sign = "≥" if passed else "<"
        return Check(
            kind, passed, f"judge score {score:.2f} {sign} {threshold:g}: {_short(reason)}", score
        )
    return Check(str(kind), False, f"unknown assertion type {kind!r}")


def run_checks(
    assertions: list[dict], observed: Observation, *, judge: Judge | None = None
) -> list[Check]:
    """One ``Check`` per assertion, in order. Never raises for a bad output: an assertion that
    cannot be evaluated (a judge call that failed, an unparseable judge answer, a malformed
    stored assertion) is a failed check saying why. No assertions but an expected output is one
    implicit ``equals`` (surrounding whitespace ignored); no assertions and no expected output
    is no check (the case passes)."""
    specs = list(assertions or [])
    if not specs and (observed.expected or "").strip():
        specs = [{"type": "equals"}]
    checks = []
    for spec in specs:
        kind = spec.get("type", "") if isinstance(spec, dict) else ""
        try:
            if not isinstance(spec, dict):
                raise ValueError("not an assertion object")
            checks.append(_check(spec, observed, judge))
        except ApplicationError as exc:
            checks.append(Check(str(kind), False, f"could not be evaluated: {exc.message}"))
        except (KeyError, TypeError, ValueError, re.error, InvalidOperation) as exc:
            checks.append(Check(str(kind), False, f"could not be evaluated: {exc}"))
    return checks
