"""The search journal: one JSON line per evaluated recipe, appended (and fsynced) before the
optimizer hears of it, so a killed driver loses at most the evaluations still in flight."""

from __future__ import annotations

import json
from pathlib import Path

from uniguard.io import append_jsonl, atomic_write_text, iter_jsonl


class Journal:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._entries: dict[str, dict] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        rows = list(iter_jsonl(self.path, tolerate_torn_tail=True))
        for row in rows:
            self._entries.setdefault(row["hash"], row)
        # Drop a torn last line (killed mid-write) so later appends start on a clean line.
        clean = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        if clean != self.path.read_text(encoding="utf-8"):
            atomic_write_text(self.path, clean)

    def __contains__(self, recipe_hash: str) -> bool:
        return recipe_hash in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, recipe_hash: str) -> dict | None:
        return self._entries.get(recipe_hash)

    def entries(self) -> list[dict]:
        return list(self._entries.values())

    def append(self, entry: dict) -> None:
        if entry["hash"] in self._entries:
            return
        append_jsonl(self.path, entry)
        self._entries[entry["hash"]] = entry
