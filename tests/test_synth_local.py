"""The local causal-LM backend: a tiny random Llama built in memory for the pipeline's bookkeeping,
and the real offline SmolLM2 in one short integration test."""

from __future__ import annotations

import pytest
import torch

from synth.backends import LocalChat, Sampling
from synth.generate import BackendSpec, SynthSettings, run_synthesis
from synth.policy import load_policy
from uniguard.core.io import read_jsonl

CHAT_TEMPLATE = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from uniguard.core.assets import default_base_model_dir

    directory = tmp_path_factory.mktemp("tiny_lm")
    tokenizer = AutoTokenizer.from_pretrained(default_base_model_dir())
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id, bos_token_id=tokenizer.cls_token_id)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def test_batched_generation_keeps_order_and_matches_unbatched(tiny_lm_dir):
    conversations = [[{"role": "user", "content": "hello " * (i + 1)}] for i in range(5)]
    greedy = Sampling(max_tokens=6, temperature=0.0)
    batched = LocalChat(tiny_lm_dir, batch_size=4).complete(conversations, greedy)
    single = LocalChat(tiny_lm_dir, batch_size=1).complete(conversations, greedy)
    assert batched == single  # left padding: a row's answer does not depend on its batch mates
    scores = LocalChat(tiny_lm_dir, batch_size=3).yes_probability(conversations)
    assert len(scores) == 5 and all(0.0 <= s <= 1.0 for s in scores)


def test_local_backend_pipeline_accounts_for_every_model_answer(tmp_path, tiny_lm_dir):
    spec = BackendSpec("local", model=tiny_lm_dir, batch_size=8)
    settings = SynthSettings(n=24, seed=0, rewrite_fraction=0.5, write_fraction=0.25, max_tokens=8, reflect=True)
    report = run_synthesis([load_policy("pii_disclosure")], spec, settings, tmp_path)
    stats = report["generation"]["per_policy"]["pii_disclosure"]
    assert stats["model_requests"] > 0
    assert sum(stats["model_outcomes"].values()) == stats["model_requests"]
    reflection = report["reflection"]
    assert reflection["judged"] == stats["template_seeds"]
    assert reflection["agreed"] + reflection["unsure"] + reflection["dropped"] == reflection["judged"]
    rows = [r for s in ("train", "validation", "test") for r in read_jsonl(tmp_path / f"{s}.jsonl")]
    assert len(rows) == reflection["judged"] - reflection["dropped"] - report["dedup"]["final_exact_dropped"] - report["dedup"]["final_near_dropped"]
    # A rerun answers everything from the cache.
    again = run_synthesis([load_policy("pii_disclosure")], spec, settings, tmp_path)
    assert again["generation"]["per_policy"]["pii_disclosure"]["cached_answers_at_start"] >= stats["model_requests"]


@pytest.mark.integration
def test_offline_smollm2_loads_generates_and_judges():
    from synth.local_lm import load_local_lm

    model, tokenizer = load_local_lm()
    assert model.config.model_type == "llama" and tokenizer.chat_template
    chat = LocalChat(batch_size=2)
    chat._loaded = (model, tokenizer)
    answers = chat.complete([[{"role": "user", "content": "Say hello."}], [{"role": "user", "content": "Name a colour."}]],
                            Sampling(max_tokens=6, temperature=0.0))
    assert len(answers) == 2 and all(a.strip() for a in answers)
    scores = chat.yes_probability([[{"role": "user", "content": "Is Paris in France? Answer Yes or No."}]])
    assert 0.0 <= scores[0] <= 1.0
