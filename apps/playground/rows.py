"""A dataset version's rows as sets of template variables (one row = one dict of variables).

The file was checked when it was uploaded (``catalog.datasets.profile_dataset``); this reads it
again, row by row, up to a cap. CSV values are text: a value whose column the variables schema
declares as an integer, a number or a boolean is converted when it reads as one (``"3"`` → 3,
``"true"`` → True), an empty CSV cell is left out (the template's default applies), and anything
else is passed as it is, so the schema reports the row's mistake on that row only.
"""

import csv
import io
import json
from typing import Any

from apps.catalog.models import DatasetFormat, DatasetVersion
from apps.core.exceptions import ApplicationError

READABLE_FORMATS = (DatasetFormat.JSONL, DatasetFormat.CSV)


def _refuse(code: str, message: str) -> ApplicationError:
    return ApplicationError(code, message, {"dataset_version": [message]})


def check_readable(version: DatasetVersion, *, limit: int) -> None:
    """Refuse, before reading anything, a version that has no rows to read or too many."""
    if not version.file:
        raise _refuse(
            "dataset_not_stored",
            f"{version} is a reference to {version.uri or 'an outside file'}, not a file stored "
            "in the portal: upload it as a new version to run a batch over it.",
        )
    if version.format not in READABLE_FORMATS:
        raise _refuse(
            "dataset_format",
            f"{version} is not a JSONL or CSV file, so it has no rows of variables.",
        )
    if version.row_count is not None and version.row_count > limit:
        raise _refuse(
            "too_many_rows",
            f"{version} has {version.row_count:,} rows; a batch runs at most {limit:,}. "
            "Split the dataset into smaller versions.",
        )


def _declared_types(schema: dict) -> dict[str, str]:
    out = {}
    for name, prop in ((schema or {}).get("properties") or {}).items():
        kind = prop.get("type") if isinstance(prop, dict) else None
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), None)
        if isinstance(kind, str):
            out[name] = kind
    return out


def _coerce(value: str, kind: str | None) -> Any:
    if kind == "integer":
        try:
            return int(value)
        except ValueError:
            return value
    if kind == "number":
        try:
            return float(value)
        except ValueError:
            return value
    if kind == "boolean" and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def _csv_rows(text: io.TextIOBase, types: dict[str, str]):
    for record in csv.DictReader(text):
        yield {
            key: _coerce(value, types.get(key))
            for key, value in record.items()
            if key is not None and value not in ("", None)
        }


def _jsonl_rows(text: io.TextIOBase):
    for lineno, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _refuse(
                "malformed_dataset", f"line {lineno} is not valid JSON ({exc.msg})."
            ) from None
        if not isinstance(row, dict):
            raise _refuse("malformed_dataset", f"line {lineno} is not a JSON object.")
        yield row


def read_rows(version: DatasetVersion, *, schema: dict, limit: int) -> list[dict]:
    """Every row of ``version`` as a dict, at most ``limit`` of them (more is refused)."""
    check_readable(version, limit=limit)
    rows: list[dict] = []
    try:
        with version.file.open("rb") as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            reader = (
                _csv_rows(text, _declared_types(schema))
                if version.format == DatasetFormat.CSV
                else _jsonl_rows(text)
            )
            for row in reader:
                if len(rows) == limit:
                    raise _refuse(
                        "too_many_rows",
                        f"{version} has more than {limit:,} rows; a batch runs at most "
                        f"{limit:,}. Split the dataset into smaller versions.",
                    )
                rows.append(row)
    except FileNotFoundError:
        raise _refuse(
            "dataset_missing", f"The file of {version} is missing from the portal's storage."
        ) from None
    except UnicodeDecodeError:
        raise _refuse("malformed_dataset", f"The file of {version} is not UTF-8 text.") from None
    except csv.Error as exc:
        raise _refuse("malformed_dataset", f"The file of {version}: CSV error: {exc}") from None
    if not rows:
        raise _refuse("empty_dataset", f"{version} has no rows.")
    return rows


def row_variables(row: dict, *, schema: dict, defaults: dict) -> dict:
    """What one row sends: the batch's defaults, overridden by the row's own values. When the
    schema declares its properties, only those are kept: the template can use no other (the
    catalog refuses a template that uses an undeclared variable), and a dataset often carries
    other columns, such as the expected answer."""
    declared = (schema or {}).get("properties")
    if isinstance(declared, dict) and declared:
        row = {key: value for key, value in row.items() if key in declared}
    return {**defaults, **row}
