"""A durable key -> text cache for model outputs, so an interrupted synthesis run resumes.

Append-only JSON Lines (one row per answer, fsynced per batch); a line torn by a killed writer
is skipped, costing only a recomputed answer. Keys hash everything that determines an answer (backend, model, messages,
sampling settings), so a changed setting never reuses a stale answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any



def cache_key(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


class AnswerCache:
    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._answers: dict[str, str] = {}
        self._lock = threading.Lock()
        if self.path and self.path.is_file():
            self._load(self.path)
        self.loaded = len(self._answers)

    def _load(self, path: Path) -> None:
        # A line torn by a killed writer stays in the middle once later runs append after it; an
        # unreadable line only costs recomputing that answer, so skip it rather than stop.
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("key"), str) and isinstance(row.get("answer"), str):
                self._answers[row["key"]] = row["answer"]

    def __contains__(self, key: str) -> bool:
        return key in self._answers

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: str) -> str | None:
        return self._answers.get(key)

    def put_many(self, items: dict[str, str]) -> None:
        if not items:
            return
        with self._lock:
            self._answers.update(items)
            if self.path is None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                # A torn tail from an earlier crash must not glue onto our first row.
                if f.tell() and not _ends_with_newline(self.path):
                    f.write("\n")
                for key, answer in items.items():
                    f.write(json.dumps({"key": key, "answer": answer}, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"
