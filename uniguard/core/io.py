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


def read_utf8(path: Path, *, tolerate_torn_tail: bool = False) -> str:
    """A text file's contents; bytes that are not UTF-8 are a user error naming the file and line
    (except in an unterminated last line with `tolerate_torn_tail`: a kill mid-character drops it)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if tolerate_torn_tail and b"\n" not in data[exc.start :]:
            return data[: data.rfind(b"\n") + 1].decode("utf-8")
        line = data.count(b"\n", 0, exc.start) + 1
        raise UserError(f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x}); "
                        "save the file with UTF-8 encoding") from None


def read_json(path: str | Path, fix: str) -> Any:
    """A JSON file uniguard wrote itself (state, markers, metadata); a corrupt one names itself and `fix`."""
    path = Path(path)
    try:
        return json.loads(read_utf8(path))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: corrupt JSON ({exc.msg} at line {exc.lineno}); {fix}") from None


def clean_unicode(text: str) -> str:
    """Lone surrogates (legal in JSON escapes, illegal in UTF-8) become U+FFFD so the tokenizer never fails."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _clean_strings(value: Any) -> Any:
    if isinstance(value, str):
        return clean_unicode(value)
    if isinstance(value, list):
        return [_clean_strings(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean_strings(v) for k, v in value.items()}
    return value


def iter_jsonl(path: str | Path, *, tolerate_torn_tail: bool = False) -> Iterator[dict]:
    """Yield rows of a JSON Lines file.

    A malformed line is a user error naming the file and line, except the last line when
    `tolerate_torn_tail` is set (an append-only journal whose writer was killed mid-line).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found; check the path (expected a JSON Lines file)")
    # split on "\n" only: str.splitlines() also breaks at U+2028 and friends, which
    # json.dumps(ensure_ascii=False) leaves raw inside strings
    lines = read_utf8(path, tolerate_torn_tail=tolerate_torn_tail).split("\n")
    if lines[-1] == "":
        lines.pop()
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
        # only a \\u escape can smuggle in a lone surrogate; skip the walk for lines without one
        yield _clean_strings(row) if "\\u" in line else row


def read_jsonl(path: str | Path, **kwargs: Any) -> list[dict]:
    return list(iter_jsonl(path, **kwargs))


def read_yaml_mapping(path: str | Path, what: str) -> dict:
    """A YAML file that must hold a mapping; missing files, bad syntax and other shapes are user errors."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found; check the path")
    try:
        raw = yaml.safe_load(read_utf8(path))
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc}); fix the syntax") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a {what} must be a YAML mapping of fields, got {type(raw).__name__}")
    return raw
