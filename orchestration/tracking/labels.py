"""Configuration labels, the one way every command names a configuration: ``CoMoL r=16 N=8``,
``CoMoL w/o CR r=16 N=8``, ``LoRA r=16`` (the paper's row names), plus whatever else tells two
configurations of one table apart (``lr=0.0002``).

Labels are built from a configuration's MLflow params (the trial config flattened by ``schema.flatten``),
so the sweep's summary, the report and the registry name a configuration the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

from orchestration.tracking.schema import param

METHOD_TITLES = {
    "lora": "LoRA",
    "molora": "MoLoRA",
    "hydralora": "HydraLoRA",
    "mola": "MoLA",
    "adamole": "AdaMoLE",
    "smear": "SMEAR",
    "flylora": "FlyLoRA",
    "comol": "CoMoL",
}
RANK = param("adapter", "r")
EXPERTS = param("adapter", "num_experts")
CORE_ROUTING = param("adapter", "core_routing")
# Params that differ between seeds of one configuration by construction: never part of a label.
_PER_RUN_PARAM = re.compile(r"seed|dir|path|run_name|output", re.IGNORECASE)


def parse_bool(value: str | None) -> bool | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in {"true", "1", "yes", "on"}:
        return True
    if text in {"false", "0", "no", "off"}:
        return False
    return None


def parse_number(value: str | None) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def format_param(value: str) -> str:
    """``16.0`` → ``16``, ``0.00020`` → ``0.0002``; anything else as logged."""
    number = parse_number(value)
    if number is not None and number.is_integer() and abs(number) < 1e6:
        return str(int(number))
    return f"{number:g}" if number is not None else value


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def base_label(method: str, params: Mapping[str, str], extra: Iterable[str] = ()) -> str:
    """The paper's row name ("CoMoL w/o CR r=16 N=8"), then ``name=value`` for each param in ``extra``."""
    name = METHOD_TITLES.get(method.lower(), method)
    if parse_bool(params.get(CORE_ROUTING)) is False:
        name += " w/o CR"
    parts = [name]
    if params.get(RANK, "None") != "None":
        parts.append(f"r={format_param(params[RANK])}")
    if params.get(EXPERTS, "None") != "None" and method.lower() != "lora":
        parts.append(f"N={format_param(params[EXPERTS])}")
    shown = {RANK, EXPERTS, CORE_ROUTING}
    parts += [f"{_short(k)}={format_param(params[k])}" for k in extra if k in params and k not in shown]
    return " ".join(parts)


def setting_defaults(method: str) -> dict[str, str]:
    """The method's defaults as params: a YAML that leaves ``adapter.r`` unset trained r=16, and older records
    did not spell defaults out."""
    from comol.methods import METHODS

    if method.lower() not in METHODS:
        return {}
    settings = METHODS[method.lower()].config_cls.settings().values()
    return {param("adapter", s.name): str(s.default) for s in settings if s.scalar and s.default is not None}


def shared_params(method: str, runs: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """The params every seed of one configuration shares (per-run ones like the seed dropped), over the
    method's defaults for settings the runs did not log."""
    shared = dict(runs[0]) if runs else {}
    for params in runs[1:]:
        shared = {k: v for k, v in shared.items() if params.get(k) == v}
    shared = {k: v for k, v in shared.items() if not _PER_RUN_PARAM.search(k)}
    return {**setting_defaults(method), **shared}


def unique_labels(methods: Mapping[str, str], params: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """config_id → label: the paper's row name; configurations that would share one get the params that tell
    them apart (``lr=0.0002``), and a config_id prefix only as a last resort."""
    labels = {cid: base_label(methods[cid], params[cid]) for cid in methods}
    by_label: dict[str, list[str]] = {}
    for cid, label in labels.items():
        by_label.setdefault(label, []).append(cid)
    for cids in by_label.values():
        if len(cids) < 2:
            continue
        keys = sorted(set().union(*(params[c] for c in cids)))
        differing = [k for k in keys if len({params[c].get(k) for c in cids}) > 1]
        for cid in cids:
            extra = [f"{_short(k)}={format_param(params[cid].get(k, '-'))}" for k in differing]
            labels[cid] = " ".join([labels[cid], *extra])
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    return {cid: f"{label} [{cid[:6]}]" if counts[label] > 1 else label for cid, label in labels.items()}


def configuration_labels(runs: Iterable[tuple[str, str, Mapping[str, str]]]) -> dict[str, str]:
    """Labels of the configurations of some runs, given as (config_id, method, params) per run."""
    methods: dict[str, str] = {}
    by_config: dict[str, list[Mapping[str, str]]] = {}
    for config_id, method, params in runs:
        methods.setdefault(config_id, method)
        by_config.setdefault(config_id, []).append(params)
    return unique_labels(methods, {cid: shared_params(methods[cid], ps) for cid, ps in by_config.items()})


BASE_LABEL = "Base model (untrained)"


def base_labels(params: Sequence[Mapping[str, str]]) -> list[str]:
    """Labels of the untrained model's rows (their base runs' params): ``Base model (untrained)``, plus the settings
    that tell two of them apart (``prompt_template=short``, ``data_seed=1``: a sweep whose seeds draw their own
    held-out problems has one base evaluation per seed)."""
    if len(params) < 2:
        return [BASE_LABEL] * len(params)
    keys = sorted(set().union(*params))
    differing = [k for k in keys if len({p.get(k) for p in params}) > 1]
    return [f"{BASE_LABEL} " + " ".join(f"{k.rsplit('.', 1)[-1]}={p.get(k, '–')}" for k in differing) for p in params]
