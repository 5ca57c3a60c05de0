"""Tiny real transformers models built from a config (no downloads), importable from any test folder.

Import these helpers as ``from tiny_models import tiny_model`` (``tests/`` is on pytest's pythonpath);
never ``from conftest import ...``: a conftest.py in a subfolder would shadow the root one.
"""

from __future__ import annotations

from pathlib import Path

import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def tiny_config(kind: str = "llama", **overrides):
    """A 2-layer causal LM config; q/k/v/o/gate/up/down all present, shapes small and unequal."""
    from transformers import LlamaConfig, Qwen3Config

    common = dict(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    common.update(overrides)
    if kind == "qwen3":
        return Qwen3Config(head_dim=8, **common)
    return LlamaConfig(**common)


def tiny_model(kind: str = "llama", seed: int = 0, **overrides) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(kind, **overrides))
    return model.eval()


BYTE_SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")  # ids 0..3: LlamaConfig's bos=1 and eos=2 are <s> and </s>
BYTES = ("\n", *(chr(code) for code in range(32, 127)))  # newline and printable ASCII: one token each


def byte_tokenizer():
    """The tests' one tokenizer: every ASCII byte of text (printable or newline) is a token, anything else <unk>,
    and <s> is prepended as Llama's tokenizer does. Real `tokenizers` machinery, built offline; its 100 ids fit
    the tiny models' vocabulary, and text it decodes encodes back to the same ids (one per character)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate([*BYTE_SPECIALS, *BYTES])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def save_tiny_model(folder: Path, seed: int = 0, **overrides) -> Path:
    """The tiny Llama with room for Alpaca prompts and the byte tokenizer, saved as a local model folder.

    Ray workers build their model from a path, so training, sweep, report and registry tests hand them this folder.
    """
    from transformers import AutoModelForCausalLM

    tokenizer = byte_tokenizer()
    config = tiny_config(vocab_size=len(tokenizer), max_position_embeddings=512, **overrides)
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
