"""Policy-driven synthetic guardrail data (the paper's SDG).

- `policy`: the policy schema, YAML loading and the built-in library (`policies/*.yaml`).
- `samples`: one labelled prompt (`Sample`) and the sample kinds.
- `templates`: the deterministic template backend (behaviour x style grammar, balanced selection).
- `traffic`, `traffic_banks`: realistic traffic for the template backend (long constrained instructions,
  multilingual chit-chat, support, pasted code and documents; attacks hidden in documents, fake markers,
  obfuscations, non-English injections; plain harmful requests as prompt-injection negatives).
- `backends`, `prompts`, `local_lm`: model backends (local causal LM, OpenAI-compatible HTTP),
  what they are asked, and the offline SmolLM2 loader (`load_local_lm`).
- `reflection`, `dedup`, `splits`, `report`, `cache`: self-reflection, duplicates, splits,
  report.json and the resumable answer cache.
- `generate`: the pipeline (`run_synthesis`); `cli`: `uniguard synth`.
"""
