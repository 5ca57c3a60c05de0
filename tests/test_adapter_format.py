"""The adapter's on-disk format version: an adapter written by an earlier layout still computes what it did."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import tiny_model

from comol import inject_adapter, load_adapter, make_config, save_adapter
from comol.errors import ConfigError
from comol.persistence import CONFIG_NAME, FORMAT_KEY, FORMAT_VERSION, WEIGHTS_NAME


def _trained_comol(seed: int = 0) -> torch.nn.Module:
    model = inject_adapter(tiny_model(seed=seed), make_config("comol", r=4, num_experts=3, dropout=0.0)).eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:  # B starts at zero: give every adapter tensor values
                param.copy_(torch.randn_like(param) * 0.2)
    return model


def _column_form_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What a format-1 layer computed: each merged core applied as M x̂ (cores stored as the transpose)."""
    layers = [m for m in model.modules() if type(m).__name__ == "CoMoLLayer"]
    saved = [layer.comol_cores["default"].data.clone() for layer in layers]
    for layer, cores in zip(layers, saved, strict=True):
        layer.comol_cores["default"].data = cores.transpose(-1, -2).contiguous()
    try:
        return model(x).logits
    finally:
        for layer, cores in zip(layers, saved, strict=True):
            layer.comol_cores["default"].data = cores


def test_saved_adapters_carry_the_format_version(tmp_path):
    model = _trained_comol()
    save_adapter(model, tmp_path, make_config("comol", r=4, num_experts=3, dropout=0.0))
    assert json.loads((tmp_path / CONFIG_NAME).read_text())[FORMAT_KEY] == FORMAT_VERSION


def test_a_format_1_comol_adapter_loads_with_the_outputs_it_had(tmp_path):
    """A format-1 file holds cores M that its layer applied as M x̂; loaded now (x̂ᵀ M), they are transposed."""
    model = _trained_comol()
    config = make_config("comol", r=4, num_experts=3, dropout=0.0)
    save_adapter(model, tmp_path, config)
    # Rewrite the folder as format 1 wrote it: no version key, and the cores a column-form layer would hold
    # to compute what this model computes (their transpose).
    data = json.loads((tmp_path / CONFIG_NAME).read_text())
    del data[FORMAT_KEY]
    (tmp_path / CONFIG_NAME).write_text(json.dumps(data))
    tensors = load_file(str(tmp_path / WEIGHTS_NAME))
    tensors = {k: v.transpose(-1, -2).contiguous() if k.endswith(".comol_cores") else v for k, v in tensors.items()}
    save_file(tensors, str(tmp_path / WEIGHTS_NAME))
    x = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        recorded = model(x).logits  # what the adapter computed when it was trained
        loaded, _ = load_adapter(tiny_model(seed=0), tmp_path)
        torch.testing.assert_close(loaded.eval()(x).logits, recorded, rtol=0, atol=1e-6)
        # the upgrade is what makes it so: read as-is, the format-1 cores compute something else
        assert (_column_form_logits(loaded, x) - recorded).abs().max() > 1e-3


def test_an_adapter_from_a_newer_format_is_refused_by_name(tmp_path):
    model = _trained_comol()
    save_adapter(model, tmp_path, make_config("comol", r=4, num_experts=3, dropout=0.0))
    data = json.loads((tmp_path / CONFIG_NAME).read_text())
    data[FORMAT_KEY] = FORMAT_VERSION + 1
    (tmp_path / CONFIG_NAME).write_text(json.dumps(data))
    with pytest.raises(ConfigError) as err:
        load_adapter(tiny_model(seed=0), tmp_path)
    assert err.value.field == FORMAT_KEY and "upgrade" in str(err.value)
