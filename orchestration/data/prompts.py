"""The Alpaca-style prompt the paper's authors use for training, evaluation and ``comol generate`` alike.

As in the authors' ``data.py``, the prompt ends at ``### Response:`` with no newline: the target follows it
directly (math_14k's outputs begin with their own newline), and generation continues from the same place.
"""

from __future__ import annotations

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


def build_prompt(instruction: str, input_text: str = "") -> str:
    """The prompt up to and including ``### Response:``; the target follows it directly."""
    if input_text and input_text.strip():
        return ALPACA_INPUT_TEMPLATE.format(instruction=instruction, input=input_text)
    return ALPACA_TEMPLATE.format(instruction=instruction)
