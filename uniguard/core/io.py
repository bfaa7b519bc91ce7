"""Small, durable file helpers shared by every package: atomic writes and JSON Lines."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from uniguard.core.errors import UserError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so a reader sees either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one row and fsync, so a crash loses at most the row being written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def iter_jsonl(path: str | Path, *, tolerate_torn_tail: bool = False) -> Iterator[dict]:
    """Yield rows of a JSON Lines file.

    A malformed line is a user error naming the file and line, except the last line when
    `tolerate_torn_tail` is set (an append-only journal whose writer was killed mid-line).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found; check the path (expected a JSON Lines file)")
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if tolerate_torn_tail and number == len(lines):
                return
            raise UserError(f"{path}:{number}: not valid JSON ({exc.msg}); fix or remove that line") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{number}: each line must be a JSON object, got {type(row).__name__}")
        yield row


def read_jsonl(path: str | Path, **kwargs: Any) -> list[dict]:
    return list(iter_jsonl(path, **kwargs))


def read_yaml_mapping(path: str | Path, what: str) -> dict:
    """A YAML file that must hold a mapping; missing files, bad syntax and other shapes are user errors."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found; check the path")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc}); fix the syntax") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a {what} must be a YAML mapping of fields, got {type(raw).__name__}")
    return raw
