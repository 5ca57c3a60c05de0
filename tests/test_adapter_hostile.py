"""Saved adapters that are damaged, mislabelled or hand-edited: each is refused by a typed input error naming the
file, never loaded silently as something else and never a raw JSON, safetensors or torch exception."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import tiny_model

from comol import inject_adapter, load_adapter, make_config, read_adapter_config, save_adapter
from comol.errors import ConfigError, InputError
from comol.persistence import CONFIG_NAME, WEIGHTS_NAME


def _saved(folder: Path, method: str = "comol", **fields) -> Path:
    config = make_config(method, r=4, dropout=0.0, **fields)
    save_adapter(inject_adapter(tiny_model(seed=0), config), folder, config)
    return folder


def _edit_config(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        data = json.loads((folder / CONFIG_NAME).read_text())
        change(data)
        (folder / CONFIG_NAME).write_text(json.dumps(data))

    return edit


def _write(name: str, content: bytes) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_bytes(content)


def _truncate(folder: Path) -> None:
    raw = (folder / WEIGHTS_NAME).read_bytes()
    (folder / WEIGHTS_NAME).write_bytes(raw[: len(raw) // 2])


def _reshape(folder: Path) -> None:
    tensors = load_file(str(folder / WEIGHTS_NAME))
    save_file({k: torch.cat([v, v]) for k, v in tensors.items()}, str(folder / WEIGHTS_NAME))


def _mola_weights(folder: Path) -> None:
    """A MoLA adapter's tensors under CoMoL's config: the adapter of one method labelled as another."""
    other = _saved(folder / "other", "mola", num_experts=3)
    (folder / WEIGHTS_NAME).write_bytes((other / WEIGHTS_NAME).read_bytes())


# (id, how the saved comol adapter is damaged, the file the error must name, a word it must contain)
CASES = [
    ("config-not-json", _write(CONFIG_NAME, b"{r: 4"), CONFIG_NAME, "JSON"),
    ("config-binary", _write(CONFIG_NAME, b"\xff\xfe\x00\x01"), CONFIG_NAME, "UTF-8"),
    ("config-a-list", _write(CONFIG_NAME, b"[1, 2]"), CONFIG_NAME, "object"),
    ("rank-a-string", _edit_config(lambda d: d.update(r="four")), CONFIG_NAME, "r"),
    ("dropout-a-string", _edit_config(lambda d: d.update(dropout="high")), CONFIG_NAME, "type"),
    ("alpha-missing", _edit_config(lambda d: d.pop("alpha")), CONFIG_NAME, "alpha"),
    ("use-dora", _edit_config(lambda d: d.update(use_dora=True)), CONFIG_NAME, "use_dora"),
    ("misspelled-setting", _edit_config(lambda d: d.update(num_expert=8)), CONFIG_NAME, "num_expert"),
    ("labelled-mola", _edit_config(lambda d: d.update(peft_type="MOLA")), CONFIG_NAME, "mola"),
    ("other-methods-weights", _mola_weights, WEIGHTS_NAME, "another method"),
    ("weights-truncated", _truncate, WEIGHTS_NAME, "safetensors"),
    ("weights-garbage", _write(WEIGHTS_NAME, b"\x00" * 7 + b"garbage" * 10), WEIGHTS_NAME, "safetensors"),
    ("weights-oversized-header", _write(WEIGHTS_NAME, struct.pack("<Q", 1 << 40) + b"{}"), WEIGHTS_NAME, "safetensors"),
    ("weights-wrong-shape", _reshape, WEIGHTS_NAME, "shape"),
]


@pytest.mark.parametrize(("case", "damage", "file", "word"), CASES, ids=[c[0] for c in CASES])
def test_a_damaged_adapter_is_refused_naming_the_file(tmp_path, case, damage, file, word):
    folder = _saved(tmp_path / "adapter", num_experts=3)
    damage(folder)
    with pytest.raises(InputError) as caught:
        load_adapter(tiny_model(seed=0), folder)
    assert file in str(caught.value), caught.value
    assert word in str(caught.value), caught.value


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"use_dora": True}, "use_dora"),
        ({"lora_alpah": 8}, "lora_alpah"),
        ({"rank_pattern": {"q_proj": 8}}, "rank_pattern"),
    ],
    ids=["use-dora", "misspelled", "rank-pattern"],
)
def test_a_lora_adapter_with_options_plain_lora_lacks_is_refused(tmp_path, change, field):
    folder = _saved(tmp_path / "lora", "lora")
    assert read_adapter_config(folder).r == 4  # PEFT's own JSON, every default key included, reads back
    _edit_config(lambda d: d.update(change))(folder)
    with pytest.raises(ConfigError) as caught:
        read_adapter_config(folder)
    assert caught.value.field == field, caught.value
