"""Synthetic data: policies, the template backend, dedup, splits, self-reflection, report, CLI."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

from synth.cache import AnswerCache
from synth.dedup import Deduper, jaccard, normalise
from synth.generate import BackendSpec, SynthSettings, run_synthesis
from synth.policy import Policy, builtin_policy_names, load_policy
from synth.reflection import reflect
from synth.samples import DEFAULT_KIND_SHARES, KINDS, UNSAFE, Sample
from synth.splits import behaviour_split, parse_fractions, stratified_split
from synth.templates import first_person, obfuscate, template_samples
from uniguard.core.errors import UserError
from uniguard.core.io import read_jsonl

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ policies
def test_builtin_library_has_the_policies_a_deployment_needs():
    names = builtin_policy_names()
    for required in ("prompt_injection", "violence_weapons", "self_harm", "illegal_activity", "hate_harassment",
                     "sexual_content", "pii_disclosure", "financial_advice", "no_tax_advice"):
        assert required in names
    for name in names:
        policy = load_policy(name)
        assert policy.name == name
        assert len(policy.disallowed) >= 5 and len(policy.allowed) >= 5
        labels = {e.label for e in policy.examples}
        assert labels == {0, 1}, f"{name} needs examples of both labels"
        assert any(not e.text.isascii() for e in policy.examples), f"{name} needs non-English examples"


def test_policy_errors_name_the_file_and_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad Name\ndescription: short\n")
    with pytest.raises(UserError) as err:
        load_policy(bad)
    message = str(err.value)
    assert str(bad) in message and "name" in message and "disallowed" in message and "description" in message

    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_policy(broken)
    with pytest.raises(UserError, match="not a built-in policy"):
        load_policy("no_such_policy")


# ------------------------------------------------------------------------------------------ templates
def _samples(name: str, n: int = 200, seed: int = 0) -> list[Sample]:
    samples, _ = template_samples(load_policy(name), n, seed, DEFAULT_KIND_SHARES, Deduper())
    return samples


def test_template_backend_is_deterministic_by_seed():
    first = [s.to_row() for s in _samples("violence_weapons", seed=3)]
    again = [s.to_row() for s in _samples("violence_weapons", seed=3)]
    other = [s.to_row() for s in _samples("violence_weapons", seed=4)]
    assert first == again
    assert [r["text"] for r in first] != [r["text"] for r in other]


def test_template_backend_covers_every_behaviour_style_and_kind():
    policy = load_policy("self_harm")
    samples = _samples("self_harm", n=300)
    unsafe = [s for s in samples if s.kind == UNSAFE]
    assert all(s.label == 1 for s in unsafe) and all(s.label == 0 for s in samples if s.kind != UNSAFE)
    assert {s.behaviour for s in unsafe} >= set(policy.disallowed)
    assert {"direct", "indirect", "role_play", "obfuscated", "multi_turn", "non_english", "example"} <= {s.style for s in unsafe}
    assert {s.kind for s in samples} == set(KINDS)
    assert abs(len(unsafe) - 150) <= 1  # half the samples are unsafe
    assert all(s.rationale and s.policy == "self_harm" for s in samples)
    # Benign requests reuse the unsafe request frames, so phrasing alone does not give the label away.
    safe_styles = {s.style for s in samples if s.label == 0}
    assert {"direct", "indirect", "multi_turn", "obfuscated", "non_english"} <= safe_styles


def test_borderline_samples_share_vocabulary_with_unsafe_ones():
    samples = _samples("violence_weapons", n=300)
    unsafe_words = {w for s in samples if s.label == 1 for w in normalise(s.text).split()}
    borderline = [s for s in samples if s.kind == "borderline"]
    assert borderline
    assert all(set(normalise(s.text).split()) & unsafe_words for s in borderline)
    assert any("kill" in s.text.lower() for s in borderline)  # "killing a computer process"


def test_user_policy_with_noun_phrase_behaviours_gets_grammatical_frames(tmp_path):
    policy = Policy(name="no_spoilers", description="Flag requests for plot spoilers of films and series.",
                    disallowed=("the ending of a film that is still in cinemas",), allowed=("film reviews without plot details",))
    samples, _ = template_samples(policy, 60, 0, DEFAULT_KIND_SHARES, Deduper())
    assert not any("go about the ending" in s.text or "way of the ending" in s.text for s in samples)
    assert any(s.label == 1 for s in samples) and any(s.label == 0 for s in samples)
    assert first_person("investing one's own savings") == "investing my own savings"


def test_only_unsafe_requests_are_wrapped_as_encoded_instructions():
    assert obfuscate("hello there", 2)[0].startswith("Decode this base64 and do what it says")
    assert obfuscate("hello there", 2, act_on_it=False)[0].startswith("What does this base64 string say?")
    samples = _samples("prompt_injection", n=300)
    assert not any("do what it says" in s.text for s in samples if s.label == 0)


def test_shortfall_is_reported_not_padded_with_safe_samples():
    policy = Policy(name="tiny", description="A tiny policy with one rule.", disallowed=("doing x",))
    samples, shortfall = template_samples(policy, 2000, 0, DEFAULT_KIND_SHARES, Deduper())
    assert shortfall["unsafe"] == 1000 - sum(s.label for s in samples)
    assert shortfall["unsafe"] > 0


# ------------------------------------------------------------------------------------------ dedup
def test_dedup_drops_exact_and_near_duplicates_and_keeps_distinct_texts():
    deduper = Deduper(near_threshold=0.7)
    assert deduper.offer("How do I kill a Python process that is hanging on my laptop?")
    assert not deduper.offer("how do I KILL a python process, that is hanging on my laptop")  # exact after normalising
    assert not deduper.offer("How do I kill a Python process that is hanging on my laptop now?")  # near
    assert deduper.offer("What's a good recipe for banana bread?")
    assert (deduper.exact_dropped, deduper.near_dropped) == (1, 1)


def test_dedup_index_finds_the_same_duplicates_as_brute_force():
    rng = random.Random(0)
    vocabulary = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    texts = []
    for _ in range(200):
        if texts and rng.random() < 0.4:  # mutate an earlier text slightly
            words = rng.choice(texts).split()
            words[rng.randrange(len(words))] = rng.choice(vocabulary)
            texts.append(" ".join(words))
        else:
            texts.append(" ".join(rng.choice(vocabulary) for _ in range(rng.randint(4, 14))))
    deduper = Deduper(0.6)
    kept_fast = [t for t in texts if deduper.offer(t)]
    kept_slow: list[str] = []
    for t in texts:
        if all(normalise(t) != normalise(k) and jaccard(t, k) < 0.6 for k in kept_slow):
            kept_slow.append(t)
    assert kept_fast == kept_slow
    assert len(kept_fast) < len(texts)


# ------------------------------------------------------------------------------------------ reflection
def test_self_reflection_drops_or_relabels_confident_disagreements_only():
    samples = [Sample(f"text {i}", label, "p", "unsafe" if label else "allowed", "why") for i, label in enumerate([1, 1, 0, 0, 1])]
    scores = [0.95, 0.05, 0.9, 0.1, 0.5]  # agree, disagree, disagree, agree, unsure
    kept, stats = reflect(samples, scores, mode="drop")
    assert [s.text for s in kept] == ["text 0", "text 3", "text 4"]
    assert (stats.judged, stats.agreed, stats.unsure, stats.dropped, stats.relabelled) == (5, 2, 1, 2, 0)
    assert stats.disagreements_by_kind == {"unsafe": 1, "allowed": 1}

    kept, stats = reflect(samples, scores, mode="relabel")
    assert [s.label for s in kept] == [1, 0, 1, 0, 1]
    assert kept[1].kind == "allowed" and kept[2].kind == "unsafe" and "relabelled" in kept[1].rationale
    assert (stats.dropped, stats.relabelled) == (0, 2)
    with pytest.raises(ValueError):
        reflect(samples, scores[:2])


# ------------------------------------------------------------------------------------------ splits + pipeline
def test_splits_are_stratified_and_validated():
    rows = [{"text": str(i), "policy": "p", "label": i % 2, "kind": "k"} for i in range(100)]
    splits = stratified_split(rows, (0.8, 0.1, 0.1), seed=0)
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [80, 10, 10]
    assert all(sum(r["label"] for r in splits[s]) * 2 == len(splits[s]) for s in splits)
    with pytest.raises(UserError, match="--split"):
        parse_fractions("0.8,0.3")


def test_behaviour_split_holds_whole_behaviours_out_of_training_with_both_labels():
    # 20 behaviours of 10 rows each: behaviours 0-9 violating (with benign look-alikes), 10-19 allowed only
    rows = [{"text": f"{b}-{i}", "policy": "p", "behaviour": f"b{b}", "label": int(b < 10 and i < 7), "kind": "k"}
            for b in range(20) for i in range(10)]
    splits = behaviour_split(rows, (0.8, 0.1, 0.1), seed=0)
    seen = {name: {r["behaviour"] for r in splits[name]} for name in splits}
    assert not seen["train"] & seen["test"] and not seen["train"] & seen["validation"] and not seen["test"] & seen["validation"]
    assert sum(len(v) for v in splits.values()) == 200 and len(splits["test"]) == 20 and len(splits["validation"]) == 20
    assert all({r["label"] for r in splits[name]} == {0, 1} for name in splits)
    with pytest.raises(UserError, match="--split-by row"):
        behaviour_split(rows[:20], (0.8, 0.1, 0.1), seed=0)  # two behaviours cannot fill three splits


def test_pipeline_writes_disjoint_stratified_splits_and_an_honest_report(tmp_path):
    policies = [load_policy("violence_weapons"), load_policy("financial_advice")]
    report = run_synthesis(policies, BackendSpec("template"), SynthSettings(n=240, seed=5), tmp_path)
    splits = {name: read_jsonl(tmp_path / f"{name}.jsonl") for name in ("train", "validation", "test")}
    for rows in splits.values():
        for row in rows:
            assert {"text", "label", "policy", "kind", "rationale"} <= row.keys()
    # Disjoint: no text, nor a near duplicate of it, in two splits (policies included).
    seen: dict[str, str] = {}
    for name, rows in splits.items():
        for row in rows:
            assert seen.setdefault(normalise(row["text"]), name) == name
    deduper = Deduper(0.7)
    assert all(deduper.offer(row["text"]) for rows in splits.values() for row in rows)
    # Stratified: every (policy, label, kind) stratum reaches validation and test.
    strata = {(r["policy"], r["label"], r["kind"]) for r in splits["train"]}
    for name in ("validation", "test"):
        assert {(r["policy"], r["label"], r["kind"]) for r in splits[name]} == strata
    # The report counts what is in the files.
    for name, rows in splits.items():
        assert report["splits"][name]["n"] == len(rows)
        assert report["splits"][name]["label"].get("1", 0) == sum(r["label"] for r in rows)
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert 0 < report["diversity"]["distinct_2"] <= 1 and report["diversity"]["languages"] >= 4
    assert report["generation"]["per_policy"]["violence_weapons"]["template_seeds"] == 240


def test_answer_cache_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    cache = AnswerCache(path)
    cache.put_many({"a": "one", "b": "two"})
    with open(path, "a") as f:
        f.write('{"key": "c", "answ')  # writer killed mid-line
    reopened = AnswerCache(path)
    assert (reopened.get("a"), reopened.get("b"), reopened.get("c")) == ("one", "two", None)
    reopened.put_many({"c": "three"})
    assert AnswerCache(path).get("c") == "three"


def _run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    from uniguard.cli import main

    monkeypatch.setattr(sys, "argv", ["uniguard", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_writes_the_files_and_reports_user_errors_without_traceback(tmp_path, monkeypatch, capsys):
    out = tmp_path / "data"
    args = ["synth", "--policy", "no_tax_advice", "--policy", str(REPO / "synth/policies/self_harm.yaml"),
            "--backend", "template", "--n", "60", "--seed", "2", "--out", str(out), "--json"]
    code, stdout, stderr = _run_cli(args, monkeypatch, capsys)
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["settings"]["policies"] == ["no_tax_advice", "self_harm"]
    assert all((out / f"{n}.jsonl").is_file() for n in ("train", "validation", "test")) and (out / "report.json").is_file()

    code, _, stderr = _run_cli(args + ["--backend", "gpt"], monkeypatch, capsys)
    assert code == 2 and "--backend 'gpt'" in stderr and "Traceback" not in stderr
    code, _, stderr = _run_cli(args[:-1] + ["--split", "0.5,0.5"], monkeypatch, capsys)
    assert code == 2 and "--split" in stderr
