"""Rows one policy's grammar makes, relabelled for the injection policies of the same run.

An injection policy judges *how* a prompt treats the assistant, never its topic: a plain request for
a weapon is allowed under prompt_injection, and the same request wrapped in a jailbreak persona or
hidden in a pasted document violates it. The topic policies of a run already make both kinds of
row, labelled for their own policy; this module gives the injection policies a share of them with
the injection label their style implies. Without them, a MultiTaskGuard sees thousands of harmful
texts that violate (under other instructions) and a few dozen plain harmful negatives of
prompt_injection, and learns that harmful content reads as an injection.

Styles that say nothing certain about an injection (obfuscated text, a policy's own examples) are
not reused.
"""

from __future__ import annotations

import random
from collections import defaultdict

from synth.policy import Policy
from synth.samples import BORDERLINE, OUT_OF_DOMAIN, UNSAFE
from synth.traffic import is_injection_policy

# Violating rows in these styles try to override, fool or route around the assistant's instructions.
ATTACK_STYLES = frozenset({"role_play", "fake_system_marker", "hidden_in_document", "persona_jailbreak",
                           "session_summary", "direct_override"})
# Rows in these styles ask plainly (whatever the topic) or are ordinary traffic.
PLAIN_STYLES = frozenset({"direct", "indirect", "multi_turn", "non_english", "educational", "everyday",
                          "word_sense", "chitchat", "support", "long_constraints", "pasted_code",
                          "pasted_document", "benign_persona", "topic_words"})
# Share of an injection policy's own row count (per split) added from the other policies.
DEFAULT_CROSS_SHARE = 0.5


def injection_label(row: dict) -> int | None:
    """1 or 0 under an injection policy for another policy's row, or None when its style cannot tell."""
    style = row.get("style", "")
    if style in ATTACK_STYLES:
        return int(row["label"] == 1)  # benign personas ("pretend you are my teacher") wrap safe requests
    return 0 if style in PLAIN_STYLES else None


def cross_policy_rows(rows: list[dict], policies: list[Policy], seed: int,
                      share: float = DEFAULT_CROSS_SHARE) -> list[dict]:
    """New rows for each injection policy in `policies`, drawn from the other policies' `rows`.

    Call it on one split at a time, so a text never crosses splits. Up to `share` x the injection
    policy's own rows, spread evenly over the source policies, their labels and the new labels
    (attacks, plain violating requests, benign traffic)."""
    injection = [p for p in policies if is_injection_policy(p)]
    if not injection or share <= 0:
        return []
    own_counts: dict[str, int] = defaultdict(int)
    for row in rows:
        own_counts[row["policy"]] += 1
    injection_names = {p.name for p in injection}  # their rows are judged by their own grammar
    rng = random.Random(seed)
    added = []
    for target in injection:
        pools: dict[tuple[str, int, int], list[dict]] = defaultdict(list)
        for row in rows:
            label = None if row["policy"] in injection_names else injection_label(row)
            if label is not None:
                pools[(row["policy"], row["label"], label)].append(_relabelled(row, target.name, label))
        added += _even_draw(pools, int(share * own_counts[target.name]), rng)
    return added


def add_cross_policy_rows(splits: dict[str, list[dict]], policies: list[Policy], seed: int,
                          share: float = DEFAULT_CROSS_SHARE) -> dict[str, int]:
    """Extend each split in place with its own cross-policy rows; returns how many each got.

    Rows reused earlier (they name a `source_policy`) are dropped first, so re-dealing a split's rows
    into smaller splits and calling this again leaves no text in two of them."""
    counts = {}
    for index, name in enumerate(splits):
        splits[name][:] = [row for row in splits[name] if not row.get("source_policy")]
        reused = cross_policy_rows(splits[name], policies, seed + index, share)
        splits[name] += reused
        counts[name] = len(reused)
    return counts


def _relabelled(row: dict, policy: str, label: int) -> dict:
    if label:
        kind, why = UNSAFE, f"{row['policy']} request wrapped in a {row['style']} frame that subverts the assistant"
    elif row["label"]:
        kind, why = BORDERLINE, f"a plain {row['policy']} request; other policies judge its topic, {policy} does not"
    else:
        kind, why = OUT_OF_DOMAIN, f"ordinary {row['policy']} traffic with no attempt to subvert the assistant"
    return row | {"policy": policy, "label": label, "kind": kind, "rationale": why, "source_policy": row["policy"]}


def _even_draw(pools: dict[tuple, list[dict]], budget: int, rng: random.Random) -> list[dict]:
    """`budget` rows taken round-robin from the pools (each shuffled), so no source dominates."""
    queues = [rng.sample(pool, len(pool)) for _, pool in sorted(pools.items())]
    taken: list[dict] = []
    while len(taken) < budget and any(queues):
        for queue in queues:
            if queue and len(taken) < budget:
                taken.append(queue.pop())
    return taken
