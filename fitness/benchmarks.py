"""Public guardrail benchmarks from the Hugging Face hub, mapped to uniguard's built-in policies.

Each loader reads the benchmark with `datasets` (hub id, config, split as published) and converts its
rows to uniguard rows (text, label, policy, source). Multi-category benchmarks emit, for each prompt,
one row per policy that its annotation speaks to: a prompt annotated unsafe in a category mapped to
policy P gives (P, 1); a prompt annotated safe gives (P, 0) for every policy the benchmark maps to.
An unsafe prompt gives no row for policies its categories do not map to (its annotation says nothing
about them), so no negative label is invented.

Without network access (as on the machines this project is built on) loading from the hub fails with
a clear message; pass `data_files=` with a local copy in the published format instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from uniguard.core.errors import UserError

Row = dict


@dataclass(frozen=True)
class Benchmark:
    name: str
    hub_id: str
    config: Optional[str]
    split: str
    convert: Callable[[Iterable[dict]], list[Row]]
    note: str = ""


def _row(text: str, label: int, policy: str, source: str) -> Row:
    return {"text": str(text), "label": int(label), "policy": policy, "source": source}


def _by_category(rows: Iterable[dict], text_of, unsafe_of, categories_of, mapping: dict[str, str], source: str) -> list[Row]:
    policies = sorted(set(mapping.values()))
    out = []
    for r in rows:
        text = text_of(r)
        if not text:
            continue
        if unsafe_of(r):
            for policy in sorted({mapping[c] for c in categories_of(r) if c in mapping}):
                out.append(_row(text, 1, policy, source))
        else:
            out += [_row(text, 0, p, source) for p in policies]
    return out


# ---------------------------------------------------------------- converters


def _toxic_chat(rows):
    """lmsys/toxic-chat: user_input, toxicity (0/1), jailbreaking (0/1). Toxicity is not split by
    category, so it maps to no single harm policy; jailbreaking maps to prompt_injection."""
    return [_row(r["user_input"], r["jailbreaking"], "prompt_injection", "toxic-chat") for r in rows if r.get("user_input")]


_OPENAI_MODERATION = {"S": "sexual_content", "S3": "sexual_content", "H": "hate_harassment", "H2": "hate_harassment",
                      "HR": "hate_harassment", "V": "violence_weapons", "V2": "violence_weapons", "SH": "self_harm"}


def _openai_moderation(rows):
    """mmathys/openai-moderation-api-evaluation: prompt + 0/1 columns per category (S, H, V, HR, SH, S3, H2, V2).
    Every category is annotated for every prompt, so each policy gets a row: 1 if any of its categories is 1."""
    out = []
    for r in rows:
        for policy in sorted(set(_OPENAI_MODERATION.values())):
            cats = [c for c, p in _OPENAI_MODERATION.items() if p == policy and r.get(c) is not None]
            if cats:
                out.append(_row(r["prompt"], int(any(int(r[c]) == 1 for c in cats)), policy, "openai-moderation"))
    return out


_AEGIS = {
    "Violence": "violence_weapons", "Guns and Illegal Weapons": "violence_weapons", "Suicide and Self Harm": "self_harm",
    "Sexual": "sexual_content", "Sexual (minor)": "sexual_content", "Hate/Identity Hate": "hate_harassment",
    "Harassment": "hate_harassment", "Threat": "hate_harassment", "PII/Privacy": "pii_disclosure",
    "Criminal Planning/Confessions": "illegal_activity", "Controlled/Regulated Substances": "illegal_activity",
    "Illegal Activity": "illegal_activity", "Fraud/Deception": "illegal_activity", "Malware": "illegal_activity",
}


def _aegis(rows):
    """nvidia/Aegis-AI-Content-Safety-Dataset-2.0 (gated): prompt, prompt_label safe/unsafe, violated_categories."""
    return _by_category(
        rows, lambda r: r.get("prompt") if r.get("prompt") != "REDACTED" else None,
        lambda r: r["prompt_label"] == "unsafe",
        lambda r: [c.strip() for c in (r.get("violated_categories") or "").split(",")], _AEGIS, "aegis-2.0",
    )


_BEAVERTAILS = {
    "violence,aiding_and_abetting,incitement": "violence_weapons", "self_harm": "self_harm",
    "sexually_explicit,adult_content": "sexual_content", "child_abuse": "sexual_content",
    "hate_speech,offensive_language": "hate_harassment", "discrimination,stereotype,injustice": "hate_harassment",
    "privacy_violation": "pii_disclosure", "financial_crime,property_crime,theft": "illegal_activity",
    "drug_abuse,weapons,banned_substance": "illegal_activity", "terrorism,organized_crime": "violence_weapons",
}


def _beavertails(rows):
    """PKU-Alignment/BeaverTails: prompt, response, category {name: bool}, is_safe. The labels judge the
    question-answer pair, so the text is the pair ("User: ...\\nAssistant: ...")."""
    return _by_category(
        rows, lambda r: f"User: {r['prompt']}\nAssistant: {r['response']}", lambda r: not r["is_safe"],
        lambda r: [c for c, v in (r.get("category") or {}).items() if v], _BEAVERTAILS, "beavertails",
    )


def _xstest_policy(kind: str) -> str:
    if "privacy" in kind:
        return "pii_disclosure"
    if "discr" in kind:
        return "hate_harassment"
    return "violence_weapons"  # homonyms, figurative language, safe targets/contexts: mostly violent look-alikes


def _xstest(rows):
    """XSTest: prompt, type (e.g. homonyms, contrast_homonyms, privacy_public), label safe/unsafe.
    Types map to the policy their look-alikes imitate (privacy -> pii, discrimination -> hate, else violence)."""
    return [_row(r["prompt"], r["label"] == "unsafe", _xstest_policy(r["type"]), "xstest") for r in rows]


_WILDGUARD = {
    "violence_and_physical_harm": "violence_weapons", "sexual_content": "sexual_content",
    "private_information_individual": "pii_disclosure", "social_stereotypes_and_discrimination": "hate_harassment",
    "toxic_language_hate_speech": "hate_harassment", "cyberattack": "illegal_activity",
    "fraud_assisting_illegal_activities": "illegal_activity", "self_harm": "self_harm",
}


def _wildguard(rows):
    """allenai/wildguardmix, config wildguardtest (gated): prompt, adversarial, prompt_harm_label, subcategory.
    Harm per subcategory as usual; `adversarial` (jailbreak framing) also labels prompt_injection."""
    rows = list(rows)
    out = _by_category(rows, lambda r: r["prompt"], lambda r: r["prompt_harm_label"] == "harmful",
                       lambda r: [r.get("subcategory")], _WILDGUARD, "wildguardtest")
    out += [_row(r["prompt"], bool(r["adversarial"]), "prompt_injection", "wildguardtest") for r in rows]
    return out


def _deepset(rows):
    """deepset/prompt-injections: text, label (1 = injection)."""
    return [_row(r["text"], r["label"], "prompt_injection", "deepset-prompt-injections") for r in rows]


_JBB = {"Harassment/Discrimination": "hate_harassment", "Malware/Hacking": "illegal_activity", "Physical harm": "violence_weapons",
        "Fraud/Deception": "illegal_activity", "Sexual/Adult content": "sexual_content", "Privacy": "pii_disclosure",
        "Economic harm": "illegal_activity"}


def _jbb(rows):
    """JailbreakBench/JBB-Behaviors (config behaviors, splits harmful and benign): Goal, Category. Benign behaviours
    are topic-matched look-alikes, so they are negatives for their own category's policy. Pass both splits' rows
    with a `split` column, or a split name via the benchmark's split."""
    out = []
    for r in rows:
        policy = _JBB.get(r["Category"])
        if policy:
            out.append(_row(r["Goal"], r.get("split", "harmful") == "harmful", policy, "jailbreakbench"))
    return out


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("toxic_chat", "lmsys/toxic-chat", "toxicchat0124", "test", _toxic_chat),
        Benchmark("openai_moderation", "mmathys/openai-moderation-api-evaluation", None, "train", _openai_moderation),
        Benchmark("aegis2", "nvidia/Aegis-AI-Content-Safety-Dataset-2.0", None, "test", _aegis, "gated: accept the licence on the hub and log in"),
        Benchmark("beavertails", "PKU-Alignment/BeaverTails", None, "30k_test", _beavertails),
        Benchmark("xstest", "walledai/XSTest", None, "test", _xstest),
        Benchmark("wildguardtest", "allenai/wildguardmix", "wildguardtest", "test", _wildguard, "gated: accept the licence on the hub and log in"),
        Benchmark("deepset_prompt_injections", "deepset/prompt-injections", None, "test", _deepset),
        Benchmark("jailbreakbench", "JailbreakBench/JBB-Behaviors", "behaviors", "harmful+benign", _jbb),
    )
}


def benchmark_names() -> list[str]:
    return sorted(BENCHMARKS)


def load_benchmark(name: str, data_files: Optional[str] = None, split: Optional[str] = None) -> list[Row]:
    """Rows of a hub benchmark; `data_files` reads a local copy (json/jsonl/csv/parquet) in the same format."""
    if name not in BENCHMARKS:
        raise UserError(f"benchmark {name!r}: unknown; choose one of {', '.join(benchmark_names())}")
    bench = BENCHMARKS[name]
    rows = _read_local(data_files) if data_files else _read_hub(bench, split)
    converted = bench.convert(rows)
    if not converted:
        raise UserError(f"benchmark {name}: no usable rows in {data_files or bench.hub_id}; check the file has the published columns")
    return converted


def _read_local(path: str) -> list[dict]:
    import datasets

    if not os.path.exists(path):
        raise UserError(f"{path}: file not found; pass a local copy of the benchmark (json, jsonl, csv or parquet)")
    suffix = path.rsplit(".", 1)[-1].lower()
    builder = {"jsonl": "json", "json": "json", "csv": "csv", "parquet": "parquet"}.get(suffix)
    if builder is None:
        raise UserError(f"{path}: unsupported file type .{suffix}; use json, jsonl, csv or parquet")
    return list(datasets.load_dataset(builder, data_files=path, split="train"))


def _read_hub(bench: Benchmark, split: Optional[str]) -> list[dict]:
    import datasets

    splits = (split or bench.split).split("+")
    rows: list[dict] = []
    try:
        for s in splits:
            part = datasets.load_dataset(bench.hub_id, bench.config, split=s)
            rows += [{**r, "split": s} for r in part]
    except Exception as exc:  # datasets raises many types for "offline", "gated", "not found"
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        note = f" ({bench.note})" if bench.note else ""
        raise UserError(
            f"benchmark {bench.name}: could not load {bench.hub_id} from the Hugging Face hub{note} — {reason}. "
            f"This needs network access to the hub; offline, download it elsewhere and pass --data-files PATH "
            f"(json, jsonl, csv or parquet with the published columns)"
        ) from None
    return rows
