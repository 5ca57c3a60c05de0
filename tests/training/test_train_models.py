"""Model cache: built once by one of several concurrent processes; smollm2-135m loads as real pretrained weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Each process builds "probe" through the real cached_folder; a build takes a while and logs its pid.
BUILD = """
import json, os, sys, time
from pathlib import Path
from orchestration.models import cached_folder
log = Path(sys.argv[1])
def build(folder):
    with log.open("a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(1.5)
    (folder / "weights.bin").write_bytes(b"x" * 1000)
path = cached_folder("probe", build)
print(json.dumps({"path": str(path), "inode": os.stat(path).st_ino}))
"""


def test_concurrent_processes_build_a_cached_model_once(tmp_path):
    env = {**os.environ, "COMOL_CACHE_DIR": str(tmp_path / "cache")}
    log = tmp_path / "builds.log"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BUILD, str(log)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err.decode()[-2000:] for _, err in outputs]
    seen = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outputs]
    assert len(log.read_text().split()) == 1  # one build; the others waited on the lock and found it
    assert seen[0] == seen[1]  # the same folder, never replaced under a reader
    folder = tmp_path / "cache" / "models" / "probe"
    assert {p.name for p in folder.iterdir()} == {"weights.bin", ".complete"}
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".probe-")]  # no staging left


@pytest.mark.slow
def test_smollm2_loads_from_the_cache_as_real_pretrained_weights():
    """Converted from the GGUF on first use (~15-20 s once per machine), then loaded from safetensors.

    In the suite's own process, after every test before it: a test that left transformers' loading state
    swapped (threaded from_pretrained, see orchestration/models.py) would show here as an untied lm_head."""
    import torch

    from orchestration.models import SMOLLM2, decoder_layers, load_model, load_tokenizer, smollm2_path

    config = json.loads((smollm2_path() / "config.json").read_text())
    tokenizer = load_tokenizer(SMOLLM2)
    model = load_model(SMOLLM2)
    ids = tokenizer("The cat sat on the mat. The dog slept in the sun.", return_tensors="pt").input_ids
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
    assert "quantization_config" not in config and config["num_hidden_layers"] == 30
    assert len(decoder_layers(model)) == 30 and model.dtype == torch.float32
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied, as SmolLM2 ships
    assert load_model(SMOLLM2, dtype=torch.bfloat16).dtype == torch.bfloat16  # the GPU path's base
    assert tokenizer.pad_token_id is not None and tokenizer.padding_side == "right"
    # Real pretrained weights, not a random init: ordinary English is cheap to predict (random: ~10.8 nats).
    assert loss < 5.0, loss


def test_threads_loading_models_at_once_leave_later_loads_intact(tmp_path):
    """transformers' loading swaps process-wide state; load_model makes threads take turns
    (without that, 24 loads on 4 threads left torch.nn.init patched and the next tied model untied)."""
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from tiny_models import tiny_model

    from orchestration.models import load_model

    untied, tied = tmp_path / "untied", tmp_path / "tied"
    tiny_model(max_position_embeddings=512).save_pretrained(untied)
    tiny_model(tie_word_embeddings=True).save_pretrained(tied)
    pristine = torch.nn.init.normal_
    with ThreadPoolExecutor(4) as pool:
        models = list(pool.map(lambda _: load_model(str(untied)), range(24)))
    assert all(m.lm_head.weight.device.type == "cpu" for m in models)
    assert torch.nn.init.normal_ is pristine
    model = load_model(str(tied))
    assert model.lm_head.weight is model.model.embed_tokens.weight
