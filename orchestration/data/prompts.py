"""The prompt templates that training, evaluation and ``comol generate`` wrap an instruction in.

``alpaca`` (the default) is the Alpaca-style prompt the paper's authors use. As in their ``data.py``, it ends at
``### Response:`` with no newline: the target follows it directly (math_14k's outputs begin with their own
newline), and generation continues from the same place. ``short`` is a two-line question/answer prompt for
small models on short tasks, where the Alpaca preamble would be most of every example's tokens (and so most of
the training and evaluation compute). The template an adapter was trained with is recorded in its folder, so
evaluation and generation wrap prompts exactly as training did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n"
    "\n"
    "### Instruction:\n"
    "{instruction}\n"
    "\n"
    "### Response:"
)

# The variant with an input block, used when a record's ``input`` is non-empty (LLM-Adapters' rule).
ALPACA_INPUT_TEMPLATE = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n"
    "\n"
    "### Instruction:\n"
    "{instruction}\n"
    "\n"
    "### Input:\n"
    "{input}\n"
    "\n"
    "### Response:"
)


# The short template: the target follows ``Answer:`` directly, so a target that starts with a space reads as
# ordinary text ("Answer: 3 + 4 = 7") and tokenizes as it would inside it.
SHORT_TEMPLATE = "Question: {instruction}\nAnswer:"
SHORT_INPUT_TEMPLATE = "Question: {instruction}\n{input}\nAnswer:"

PromptTemplate = Literal["alpaca", "short"]
DEFAULT_TEMPLATE: PromptTemplate = "alpaca"
# name → (the template, its variant with an input block)
TEMPLATES: dict[str, tuple[str, str]] = {
    "alpaca": (ALPACA_TEMPLATE, ALPACA_INPUT_TEMPLATE),
    "short": (SHORT_TEMPLATE, SHORT_INPUT_TEMPLATE),
}


def build_prompt(instruction: str, input_text: str = "", template: str = DEFAULT_TEMPLATE) -> str:
    """The prompt up to where the target begins (``### Response:`` or ``Answer:``); the target follows directly."""
    plain, with_input = TEMPLATES[check_template(template)]
    if input_text and input_text.strip():
        return with_input.format(instruction=instruction, input=input_text)
    return plain.format(instruction=instruction)


def check_template(template: str) -> str:
    """``template`` if it is a known template's name, else a ConfigError listing them."""
    # imported here: the config validates with this module's names before anything imports torch (comol does)
    from comol.errors import ConfigError

    if template not in TEMPLATES:
        raise ConfigError("prompt_template", f"unknown prompt template {template!r}", allowed=list(TEMPLATES))
    return template


# Written next to the adapter's own files (and so logged, registered and shipped to evaluation with them).
TEMPLATE_FILE = "prompt_template.json"


def record_template(adapter_dir: str | Path, template: str) -> Path:
    """Record in an adapter folder the prompt template it is trained with."""
    path = Path(adapter_dir) / TEMPLATE_FILE
    path.write_text(json.dumps({"prompt_template": check_template(template)}) + "\n")
    return path


def recorded_template(adapter_dir: str | Path) -> str:
    """The prompt template an adapter folder was trained with; Alpaca when it records none (adapters saved
    before the template was recorded, or by ``comol.save_adapter`` alone, were trained with Alpaca)."""
    path = Path(adapter_dir) / TEMPLATE_FILE
    if not path.is_file():
        return DEFAULT_TEMPLATE
    try:
        template = json.loads(path.read_text())["prompt_template"]
    except (ValueError, KeyError, TypeError):
        from comol.errors import ConfigError

        raise ConfigError(TEMPLATE_FILE, f'{path} does not hold {{"prompt_template": NAME}}') from None
    return check_template(template)
