"""Other policies' rows relabelled for injection policies: by style, within one split, to a budget."""

from collections import Counter

import pytest

from synth.cross_policy import cross_policy_rows, injection_label
from synth.generate import BackendSpec, SynthSettings, run_synthesis
from synth.policy import load_policy
from uniguard.core.errors import UserError
from uniguard.core.io import read_jsonl


def _row(text, label, style, policy="violence_weapons"):
    return {"text": text, "label": label, "policy": policy, "kind": "unsafe" if label else "allowed", "style": style,
            "rationale": "r", "behaviour": "b", "lang": "en", "source": "template"}


@pytest.mark.parametrize("label, style, expected", [
    (1, "persona_jailbreak", 1),  # a harmful request inside a jailbreak persona is an injection
    (1, "hidden_in_document", 1),
    (1, "role_play", 1),
    (0, "role_play", 0),  # "pretend you are my teacher" around a safe request is not
    (1, "direct", 0),  # a plain harmful request: other policies judge its topic
    (0, "everyday", 0),
    (1, "obfuscated", None),  # says nothing certain about an injection: not reused
    (1, "example", None),
])
def test_injection_label_follows_the_style_not_the_topic(label, style, expected):
    assert injection_label(_row("t", label, style)) == expected


def test_rows_go_to_injection_policies_only_within_budget_and_evenly():
    topic = [_row(f"attack {i}", 1, "persona_jailbreak") for i in range(20)]
    topic += [_row(f"plain harmful {i}", 1, "direct") for i in range(20)]
    topic += [_row(f"benign {i}", 0, "everyday") for i in range(20)]
    topic += [_row(f"scrambled {i}", 1, "obfuscated") for i in range(20)]
    own = [_row(f"injection {i}", i % 2, "direct_override", "prompt_injection") for i in range(30)]
    policies = [load_policy("violence_weapons"), load_policy("prompt_injection")]

    added = cross_policy_rows(topic + own, policies, seed=0, share=0.5)

    assert len(added) == 15 and {r["policy"] for r in added} == {"prompt_injection"}
    assert {r["source_policy"] for r in added} == {"violence_weapons"}  # never its own rows again
    by_text = {r["text"]: r for r in topic}
    for row in added:
        assert row["label"] == injection_label(by_text[row["text"]])
        assert row["kind"] == ("unsafe" if row["label"] else ("borderline" if by_text[row["text"]]["label"] else "out_of_domain"))
    # evenly over (attacks, plain violating requests, benign traffic); obfuscated rows never
    assert Counter(r["text"].rsplit(" ", 1)[0] for r in added) == {"attack": 5, "plain harmful": 5, "benign": 5}
    assert cross_policy_rows(topic + own, policies, seed=0, share=0.5) == added  # deterministic
    assert cross_policy_rows(topic, [load_policy("violence_weapons")], seed=0) == []  # no injection policy
    assert cross_policy_rows(topic + own, policies, seed=0, share=0) == []


def test_synthesis_reuses_rows_inside_their_split_and_reports_them(tmp_path):
    policies = [load_policy("prompt_injection"), load_policy("self_harm")]
    report = run_synthesis(policies, BackendSpec("template"), SynthSettings(n=200, seed=1), tmp_path)
    splits = {name: read_jsonl(tmp_path / f"{name}.jsonl") for name in ("train", "validation", "test")}
    labels = set()
    for name, rows in splits.items():
        reused = [r for r in rows if r.get("source_policy")]
        assert len(reused) == report["cross_policy_rows"][name] > 0
        originals = {r["text"]: r for r in rows if r["policy"] == "self_harm"}
        assert all(r["policy"] == "prompt_injection" and r["label"] == injection_label(originals[r["text"]]) for r in reused)
        labels |= {r["label"] for r in reused}
    assert labels == {0, 1}  # a small split may hold no attack-style row to reuse, all three together do
    texts = [{r["text"] for r in rows} for rows in splits.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])  # no text crosses splits

    off = run_synthesis(policies, BackendSpec("template"), SynthSettings(n=200, seed=1, cross_policy_share=0), tmp_path / "off")
    assert off["cross_policy_rows"] == {"train": 0, "validation": 0, "test": 0}
    with pytest.raises(UserError, match="--cross-policy-share"):
        SynthSettings(cross_policy_share=-1).validate()


def test_the_quickstart_five_files_share_no_text_with_cross_policy_rows_in_each(tmp_path):
    from experiments.quickstart import CONFIRMATION_FILE, PLANS, SEARCH_FILE, synthesize

    plan = PLANS["fast"]
    synthesize(list(plan.policies), plan, tmp_path / "data", fitness_dir=tmp_path / "fitness")
    files = [tmp_path / "data" / f"{name}.jsonl" for name in ("train", "validation", "test")]
    files += [tmp_path / "fitness" / SEARCH_FILE, tmp_path / "fitness" / CONFIRMATION_FILE]
    texts = {}
    for path in files:
        rows = read_jsonl(path)
        assert any(r.get("source_policy") for r in rows), path  # each file has its own reused rows
        for text in {r["text"] for r in rows}:
            assert texts.setdefault(text, path) == path, f"{text!r} in {texts[text].name} and {path.name}"
