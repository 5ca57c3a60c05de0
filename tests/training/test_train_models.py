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


# Run in a fresh interpreter, as Ray workers load it: in one long pytest process, a model loaded after
# tests/report's tests once gave NaN logits (not reproduced in a fresh process; see the closing note).
SMOLLM2_CHECK = """
import json, torch
from orchestration.models import SMOLLM2, decoder_layers, load_model, load_tokenizer, smollm2_path
folder = smollm2_path()
config = json.loads((folder / "config.json").read_text())
tokenizer = load_tokenizer(SMOLLM2)
model = load_model(SMOLLM2)
ids = tokenizer("The cat sat on the mat. The dog slept in the sun.", return_tensors="pt").input_ids
with torch.no_grad():
    loss = model(input_ids=ids, labels=ids).loss.item()
print(json.dumps({
    "quantized": "quantization_config" in config, "layers": config["num_hidden_layers"],
    "dtype": str(model.dtype), "decoder_layers": len(decoder_layers(model)),
    "pad": tokenizer.pad_token_id, "padding_side": tokenizer.padding_side, "loss": loss,
    "bf16": str(load_model(SMOLLM2, dtype=torch.bfloat16).dtype),
}))
"""


@pytest.mark.slow
def test_smollm2_loads_from_the_cache_as_real_pretrained_weights():
    """Converted from the GGUF on first use (~15-20 s once per machine), then loaded from safetensors."""
    done = subprocess.run([sys.executable, "-c", SMOLLM2_CHECK], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert not seen["quantized"] and seen["layers"] == 30 and seen["decoder_layers"] == 30
    assert seen["dtype"] == "torch.float32" and seen["bf16"] == "torch.bfloat16"  # bf16: the GPU path's base
    assert seen["pad"] is not None and seen["padding_side"] == "right"
    # Real pretrained weights, not a random init: ordinary English is cheap to predict (random: ~10.8 nats).
    assert seen["loss"] < 5.0, seen
