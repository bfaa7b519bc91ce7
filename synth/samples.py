"""The unit of synthetic data: one labelled prompt with where it came from and why it has its label."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

# Sample kinds (paper: SDG). One label per kind except that self-reflection may relabel a sample.
UNSAFE = "unsafe"  # a request for a disallowed behaviour
ALLOWED = "allowed"  # a request for an allowed behaviour
BORDERLINE = "borderline"  # safe, but shares vocabulary with unsafe requests ("kill a Python process")
IN_DOMAIN = "in_domain"  # safe, on the policy's topic
OUT_OF_DOMAIN = "out_of_domain"  # safe, unrelated to the policy
KINDS = (UNSAFE, ALLOWED, BORDERLINE, IN_DOMAIN, OUT_OF_DOMAIN)
SAFE_KINDS = KINDS[1:]

# Share of each kind in a policy's data: half unsafe; the safe half weighted towards the hard cases, with
# a sizeable share of unrelated everyday traffic (long, multilingual, pasted text), which is most of
# what a deployed guard sees.
DEFAULT_KIND_SHARES = {UNSAFE: 0.5, ALLOWED: 0.18, BORDERLINE: 0.15, IN_DOMAIN: 0.07, OUT_OF_DOMAIN: 0.10}


@dataclass(frozen=True)
class Sample:
    text: str
    label: int  # 1 = violates the policy
    policy: str
    kind: str
    rationale: str
    style: str = "direct"
    behaviour: str = ""  # the policy behaviour (or example) this sample was made from
    lang: str = "en"
    source: str = "template"  # template | local | openai (who wrote the final text)
    group: str = ""  # samples with the same group come from the same seed; used to spread selection

    def to_row(self) -> dict:
        row = asdict(self)
        row.pop("group")
        return row

    def with_text(self, text: str, source: str) -> "Sample":
        return replace(self, text=text, source=source)

    @classmethod
    def from_row(cls, row: dict) -> "Sample":
        fields = {k: row[k] for k in cls.__dataclass_fields__ if k in row}
        return cls(**fields)
