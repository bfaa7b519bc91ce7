"""Labelled guard data: JSON Lines rows with `text`, `label` (1 = violates) and `policy` (optional `lang`).

Everything that reads labelled rows (training, evaluation, baselines) goes through `load_rows`,
so a bad row is reported the same way everywhere: file, line number, field, fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from synth.policy import Policy, load_policy
from synth.samples import OUT_OF_DOMAIN
from trainers.metrics import FPR_RULE, parse_threshold_rule
from uniguard.core.errors import UserError
from uniguard.core.io import iter_jsonl

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Example:
    text: str
    label: int
    policy: str
    lang: str = ""  # language code where the row names one (`uniguard synth` rows do): per-language metrics
    kind: str = ""  # `uniguard synth`'s kind (unsafe, allowed, ..., out_of_domain) where the row names one


def load_rows(path: str | Path) -> list[Example]:
    """Validated examples of one JSON Lines file; extra fields (kind, rationale, ...) are ignored."""
    path = Path(path)
    examples = []
    for number, row in enumerate(iter_jsonl(path), start=1):
        examples.append(_parse_row(row, f"{path}:{number}"))
    return examples


def _parse_row(row: dict, where: str) -> Example:
    text, label, policy = row.get("text"), row.get("label"), row.get("policy")
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"{where}: `text` must be a non-empty string; fix or remove the row")
    if label not in (0, 1) or isinstance(label, bool):
        raise UserError(f"{where}: `label` must be 0 (allowed) or 1 (violates), got {label!r}")
    if not isinstance(policy, str) or not policy.strip():
        raise UserError(f"{where}: `policy` must name the policy the label refers to (e.g. \"prompt_injection\")")
    lang = row.get("lang")
    if lang is not None and not isinstance(lang, str):
        raise UserError(f"{where}: `lang` must be a language code string such as \"en\", got {lang!r}; fix or remove it")
    kind = row.get("kind")
    return Example(text=text, label=int(label), policy=policy.strip(), lang=(lang or "").strip(),
                   kind=kind.strip() if isinstance(kind, str) else "")


def everyday_rows(examples: Sequence[Example], threshold_rule: str) -> list[Example]:
    """The benign everyday rows (chit-chat, support messages, pasted code, ...) of every policy in
    `examples`, which calibration under a false-positive target counts for every other policy too;
    none under another rule (an F1-best threshold would move with the class mix they change)."""
    if parse_threshold_rule(threshold_rule).name != FPR_RULE:
        return []
    return [e for e in examples if e.kind == OUT_OF_DOMAIN and e.label == 0]  # unrelated to its policy: benign under every one


def load_benign_texts(path: str | Path) -> list[str]:
    """Unlabelled benign user traffic (JSON Lines rows with `text`) for the fpr threshold rule."""
    path = Path(path)
    texts = []
    for number, row in enumerate(iter_jsonl(path), start=1):
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{path}:{number}: `text` must be a non-empty string; fix or remove the row")
        if row.get("label", 0) != 0:
            raise UserError(f"{path}:{number}: `label` is {row['label']!r}, but --benign rows are benign traffic; remove the row or its label")
        texts.append(text)
    if not texts:
        raise UserError(f"{path}: no rows; --benign needs benign user texts, one JSON object with `text` per line")
    return texts


def load_split(data_dir: str | Path, split: str, required: bool = True) -> list[Example]:
    """`DATA_DIR/<split>.jsonl` as written by `uniguard synth`; [] when optional and absent."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"{data_dir}: data directory not found; pass a directory written by `uniguard synth`")
    path = data_dir / f"{split}.jsonl"
    if not path.is_file():
        if required:
            raise UserError(f"{path}: missing; a data directory needs {', '.join(f'{s}.jsonl' for s in SPLITS[:2])}")
        return []
    return load_rows(path)


def load_splits(data_dirs: Sequence[str | Path], test_required: bool = False) -> dict[str, list[Example]]:
    """Train, validation and (optional) test examples of one or several data directories, concatenated."""
    splits: dict[str, list[Example]] = {s: [] for s in SPLITS}
    for data_dir in data_dirs:
        for split in SPLITS:
            splits[split] += load_split(data_dir, split, required=split != "test" or test_required)
    return splits


def only_policies(examples: Iterable[Example], names: Sequence[str]) -> list[Example]:
    wanted = set(names)
    return [e for e in examples if e.policy in wanted]


def policy_names(examples: Iterable[Example]) -> list[str]:
    return sorted({e.policy for e in examples})


def resolve_policies(names_in_data: Sequence[str], given: Sequence[str] = ()) -> dict[str, Policy]:
    """Policy objects for every name in the data: a given YAML/name overrides, else the built-in."""
    resolved = {p.name: p for p in (load_policy(g) for g in given)}
    for name in names_in_data:
        if name not in resolved:
            try:
                resolved[name] = load_policy(name)
            except UserError:
                raise UserError(
                    f"the data names policy {name!r}, which is not built in; pass its YAML with --policy PATH.yaml"
                ) from None
    return resolved


def check_both_classes(examples: Sequence[Example], where: str) -> None:
    """Training and threshold calibration need positives and negatives for every policy."""
    if not examples:
        raise UserError(f"{where}: no examples; check the data directory and --policy")
    for name in policy_names(examples):
        labels = {e.label for e in examples if e.policy == name}
        if labels != {0, 1}:
            only = "violating (1)" if labels == {1} else "allowed (0)"
            raise UserError(
                f"{where}: policy {name!r} has only {only} examples; a guard needs both classes — "
                "add the missing class (e.g. regenerate with `uniguard synth`)"
            )
