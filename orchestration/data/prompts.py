"""The Alpaca-style prompt the paper (and LLM-Adapters) use for training and evaluation."""

from __future__ import annotations

ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n"
    "\n"
    "### Instruction:\n"
    "{instruction}\n"
    "\n"
    "### Response:\n"
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
    "### Response:\n"
)


def build_prompt(instruction: str, input_text: str = "") -> str:
    """The prompt up to and including ``### Response:\\n``; the target follows it directly."""
    if input_text and input_text.strip():
        return ALPACA_INPUT_TEMPLATE.format(instruction=instruction, input=input_text)
    return ALPACA_TEMPLATE.format(instruction=instruction)
