"""Reading an uploaded dataset: sha256, row count and a column schema, or the line that is wrong."""

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from typing import IO

from apps.core.exceptions import ApplicationError


@dataclass(frozen=True)
class DatasetProfile:
    sha256: str
    size_bytes: int
    row_count: int
    schema: dict  # {"columns": {name: type}}


def _type_of(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _merge(columns: dict[str, set[str]], row: dict) -> None:
    for key, value in row.items():
        columns.setdefault(str(key), set()).add(_type_of(value))


def _csv_type(value: str) -> str:
    if value == "":
        return "null"
    for cast, name in ((int, "integer"), (float, "number")):
        try:
            cast(value)
        except ValueError:
            continue
        return name
    if value.lower() in ("true", "false"):
        return "boolean"
    return "string"


def _schema(columns: dict[str, set[str]]) -> dict:
    out = {}
    for name, types in columns.items():
        concrete = sorted(types - {"null"})
        if not concrete:
            kind = "null"
        elif concrete == ["integer", "number"]:
            kind = "number"
        elif len(concrete) == 1:
            kind = concrete[0]
        else:
            kind = "|".join(concrete)
        out[name] = kind + ("?" if "null" in types and concrete else "")
    return {"columns": out}


def _text_lines(fh: IO[bytes], digest) -> "io.TextIOWrapper":
    class Hashing(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buffer):
            chunk = fh.read(len(buffer))
            if not chunk:
                return 0
            digest.update(chunk)
            buffer[: len(chunk)] = chunk
            return len(chunk)

    return io.TextIOWrapper(io.BufferedReader(Hashing()), encoding="utf-8", newline="")


def profile_dataset(fh: IO[bytes], fmt: str) -> DatasetProfile:
    """Stream the file once: hash it, count rows, infer a schema; refuse a malformed file."""
    digest = hashlib.sha256()
    fh.seek(0)
    text = _text_lines(fh, digest)
    columns: dict[str, set[str]] = {}
    rows = 0
    try:
        if fmt == "jsonl":
            for lineno, line in enumerate(text, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ApplicationError(
                        "malformed_dataset",
                        f"line {lineno}: not valid JSON ({exc.msg} at column {exc.colno})",
                        {"file": [f"line {lineno}: {exc.msg}"]},
                    ) from None
                if not isinstance(row, dict):
                    raise ApplicationError(
                        "malformed_dataset",
                        f"line {lineno}: each line must be a JSON object",
                        {"file": [f"line {lineno}: not an object"]},
                    )
                _merge(columns, row)
                rows += 1
        elif fmt == "csv":
            reader = csv.reader(text)
            header = next(reader, None)
            if not header or not any(h.strip() for h in header):
                raise ApplicationError(
                    "malformed_dataset",
                    "line 1: a CSV file needs a header row",
                    {"file": ["line 1: no header"]},
                )
            if len(set(header)) != len(header):
                raise ApplicationError(
                    "malformed_dataset",
                    "line 1: the header repeats a column name",
                    {"file": ["line 1: duplicate column"]},
                )
            for name in header:
                columns[name] = set()
            for record in reader:
                if not record:
                    continue
                if len(record) != len(header):
                    lineno = reader.line_num
                    raise ApplicationError(
                        "malformed_dataset",
                        f"line {lineno}: expected {len(header)} fields, found {len(record)}",
                        {"file": [f"line {lineno}: wrong number of fields"]},
                    )
                for name, value in zip(header, record, strict=True):
                    columns[name].add(_csv_type(value))
                rows += 1
        else:
            while chunk := fh.read(1 << 16):
                digest.update(chunk)
    except UnicodeDecodeError as exc:
        raise ApplicationError(
            "malformed_dataset",
            f"the file is not UTF-8 text (byte {exc.start})",
            {"file": ["not UTF-8"]},
        ) from None
    except csv.Error as exc:
        raise ApplicationError(
            "malformed_dataset", f"CSV error: {exc}", {"file": [str(exc)]}
        ) from None
    if fmt in ("jsonl", "csv") and rows == 0:
        raise ApplicationError(
            "malformed_dataset", "the file has no data rows", {"file": ["empty"]}
        )
    size = fh.tell()
    fh.seek(0)
    return DatasetProfile(
        sha256=digest.hexdigest(), size_bytes=size, row_count=rows, schema=_schema(columns)
    )
