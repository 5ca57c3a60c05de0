"""The report in four forms: a rich terminal table, Markdown, CSV and LaTeX, laid out like the paper's tables
(rows: configurations; columns: benchmarks, Average, Params)."""

from __future__ import annotations

import io
import math

import pandas as pd
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from orchestration.report.build import MIN_SEEDS, BaseRow, Report
from orchestration.report.significance import ALPHA, CONFIDENCE, INTERVAL, MAX_SEEDS, POWER

DAGGER = "†"
TEX_DAGGER = r"$^\dagger$"
WARN = "⚠"


def human(value: float, suffix: str = "") -> str:
    """24.8M, 1.3K: counts as the paper prints them."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}{suffix}"
    return f"{value:.0f}{suffix}"


def caption(report: Report) -> str:
    unit = "accuracy in %" if report.scale == 100 else "metric values as logged"
    ref = report.table.at[report.reference, "label"] if report.reference else None
    text = (
        f"Sweep {report.sweep}: mean ± sample standard deviation (ddof = 1) over seeds ({unit}). "
        f"Bold: best, underlined: second best per column. {DAGGER}: below the column's best with Holm-adjusted "
        f"p < {ALPHA} (Welch's t-test over seeds; Holm over every pair of rows in the column, because the best "
        "is picked post hoc from the same seeds). Params: trainable adapter parameters."
    )
    if ref:
        text += f" Reference for the significance tables: {ref}."
    if report.base:
        text += (
            " Last row: the untrained base model, scored once by the same evaluation with the same prompts (greedy "
            "decoding: no seeds, no spread); what fine-tuning is measured against, outside the marks and tests."
        )
    return text


def base_cells(report: Report, row: BaseRow) -> list[str]:
    """A base row's cells in the table's columns (after Method and Seeds), then the extra columns."""
    values = [row.values.get(c.metric, math.nan) for c in report.columns]
    return [*("–" if pd.isna(v) else f"{v * report.scale:.1f}" for v in values), "0", "–", "–"]


def _cell_text(report: Report, cid: str, metric: str) -> tuple[str, set[str]]:
    mean = report.table.at[cid, f"{metric} mean"]
    std = report.table.at[cid, f"{metric} std"]
    if pd.isna(mean):
        return "–", set()
    text = f"{mean * report.scale:.1f}"
    if not pd.isna(std):
        text += f" ± {std * report.scale:.1f}"
    return text, report.marks.get((cid, metric), set())


def _label(report: Report, cid: str) -> str:
    label = report.table.at[cid, "label"]
    return f"{label} {WARN}" if report.table.at[cid, "seeds"] < MIN_SEEDS else label


def _extra(report: Report, cid: str) -> list[str]:
    row = report.table.loc[cid]
    train = "–" if pd.isna(row["train_s"]) else f"{row['train_s']:.0f}"
    return [human(row["params"]), human(row["flops_per_token"]), train]


EXTRA_HEADERS = ["Params", "FLOPs/token", "Train (s)"]


def _p(p: float) -> str:
    if pd.isna(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _seeds(row: pd.Series, prefix: str) -> str:
    """Seeds a side that would detect the observed Δ, or why that cannot be said."""
    seeds, note = row[f"{prefix} seeds_needed"], row[f"{prefix} note"]
    if not pd.isna(seeds):
        return f"{int(seeds)}"
    if pd.isna(row[f"{prefix} p"]):
        return "–"  # no test at all: the row's note says why
    return "none (Δ = 0)" if note == "no difference observed" else f"> {MAX_SEEDS}"


def _diff(report: Report, prefix: str, row: pd.Series) -> list[str]:
    if pd.isna(row[f"{prefix} diff"]):
        return ["–"] * 6
    s = report.scale
    mark = f" {DAGGER}" if row[f"{prefix} significant"] else ""
    ci = (
        "n/a"
        if pd.isna(row[f"{prefix} ci_low"])
        else f"[{row[f'{prefix} ci_low'] * s:+.1f}, {row[f'{prefix} ci_high'] * s:+.1f}]"
    )
    detectable = row[f"{prefix} detectable"]
    return [
        f"{row[f'{prefix} diff'] * s:+.1f}",
        ci,
        _p(row[f"{prefix} p"]),
        _p(row[f"{prefix} p_holm"]) + mark,
        "–" if pd.isna(detectable) else f"{detectable * s:.1f}",
        _seeds(row, prefix),
    ]


# The two comparisons every report makes, each its own table: (significance column prefix, title).
COMPARISONS = (("vs best", "Significance vs best"), ("vs reference", "Significance vs reference"))


def _comparisons(report: Report) -> list[tuple[str, str]]:
    """The comparisons this report has: against the best always, against a reference when there is one."""
    return [(p, t) for p, t in COMPARISONS if p == "vs best" or report.reference is not None]


def _target(report: Report, prefix: str) -> str:
    if prefix == "vs best":
        return report.table.at[report.best, "label"]
    return report.table.at[report.reference, "label"] if report.reference else report.reference_name


def significance_headers(report: Report, prefix: str) -> list[str]:
    return [
        "Configuration",
        f"{report.headline.title}",
        f"Δ vs {_target(report, prefix)}",
        f"{CONFIDENCE:.0%} CI ({INTERVAL})",
        "p (Welch)",
        "p (Holm)",
        f"detectable Δ ({POWER:.0%} power)",
        "seeds a side for Δ",
    ]


def significance_rows(report: Report, prefix: str) -> list[list[str]]:
    rows = []
    for cid, row in report.significance.iterrows():
        text, _ = _cell_text(report, cid, report.headline.metric)
        rows.append([_label(report, cid), text, *_diff(report, prefix, row)])
    return rows


def significance_notes(report: Report, prefix: str) -> list[str]:
    """Why a row has no test (too few seeds, no spread): said once in words under the table."""
    notes = []
    for cid, row in report.significance.iterrows():
        if not pd.isna(row[f"{prefix} diff"]) and pd.isna(row[f"{prefix} p"]) and row[f"{prefix} note"]:
            notes.append(f"{_label(report, cid)} {prefix} {_target(report, prefix)}: {row[f'{prefix} note']}")
    return notes


def significance_caption(report: Report, prefix: str) -> str:
    family = report.significance.attrs.get("family", {}).get(prefix, 0)
    metric = report.headline.title
    if prefix == "vs best":
        who = (
            f"{metric} of each configuration against the best row, {_target(report, prefix)}, picked post hoc as "
            "the highest seed mean of these same runs."
        )
        holm = f"Holm over all {family} testable pairs of rows, the family that covers picking the best afterwards"
    else:
        who = f"{metric} of each configuration against the reference, {_target(report, prefix)}"
        if len(report.reference_candidates) > 1:
            who += f", picked post hoc as the best of {len(report.reference_candidates)} {report.reference_name} rows."
            holm = f"Holm over all {family} testable pairs with one of those rows, which covers that pick"
        else:
            who += ", named in advance."
            holm = f"Holm over its {family} testable comparisons"
    return (
        f"{who} Δ: difference of seed means. {CONFIDENCE:.0%} CI: Welch's t-interval of Δ "
        f"(Welch–Satterthwaite degrees of freedom); it excludes 0 exactly when p (Welch's t-test, unadjusted) "
        f"< {ALPHA}. p (Holm): {holm}; {DAGGER}: p (Holm) < {ALPHA}. Detectable Δ: the smallest difference "
        f"this test finds with {POWER:.0%} power at the observed spread and these seed counts (two-sided "
        f"α = {ALPHA}, noncentral t); seeds a side for Δ: how many seeds per configuration would find the "
        f"observed Δ with {POWER:.0%} power. Spreads from a few seeds are rough, so the last two are planning "
        "figures, not evidence."
    )


# --- terminal ---------------------------------------------------------------------------------------
def rich_tables(report: Report) -> Group:
    table = Table(
        title=f"comol report: {escape(report.sweep)}", caption=escape(caption(report)), caption_justify="left"
    )
    table.add_column("Method", no_wrap=True)
    table.add_column("Seeds", justify="right")
    for column in report.columns:
        table.add_column(column.title, justify="right")
    for header in EXTRA_HEADERS:
        table.add_column(header, justify="right")
    for cid in report.table.index:
        cells = []
        for column in report.columns:
            text, marks = _cell_text(report, cid, column.metric)
            style = "bold" if "best" in marks else "underline" if "second" in marks else ""
            cell = Text(text, style=style)
            if "dagger" in marks:
                cell.append(DAGGER)
            cells.append(cell)
        table.add_row(escape(_label(report, cid)), str(report.table.at[cid, "seeds"]), *cells, *_extra(report, cid))
    if report.base:
        table.add_section()
    for row in report.base:
        table.add_row(escape(row.label), "–", *base_cells(report, row), style="dim")
    parts: list = [table]
    for prefix, title in _comparisons(report):
        sig = Table(title=title, caption=escape(significance_caption(report, prefix)), caption_justify="left")
        for i, header in enumerate(significance_headers(report, prefix)):
            sig.add_column(escape(header), justify="left" if i == 0 else "right", no_wrap=i == 0)
        for row in significance_rows(report, prefix):
            sig.add_row(*(escape(c) for c in row))
        parts.append(sig)
        parts += [Text(f"note: {n}", style="dim") for n in significance_notes(report, prefix)]
    for warning in report.warnings:
        parts.append(Text(f"{WARN} WARNING: {warning}", style="bold yellow"))
    for note in report.notes:
        parts.append(Text(f"note: {note}", style="dim"))
    return Group(*parts)


def terminal_text(report: Report, width: int = 160) -> str:
    """The terminal rendering as plain text (what ``comol report`` prints, without colours)."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=False, color_system=None).print(rich_tables(report))
    return buffer.getvalue()


# --- Markdown ---------------------------------------------------------------------------------------
def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(_md_escape(c) for c in cells) + " |"


def markdown(report: Report, plots: list[str] | None = None) -> str:
    headers = ["Method", "Seeds", *(c.title for c in report.columns), *EXTRA_HEADERS]
    lines = [f"# Sweep `{report.sweep}`", ""]
    for warning in report.warnings:
        lines += [f"> **{WARN} Warning:** {warning}", ""]
    lines += [f"**Table 1.** {caption(report)}", "", _md_row(headers)]
    lines.append("| " + " | ".join([":--", "--:", *(["--:"] * (len(headers) - 2))]) + " |")
    for cid in report.table.index:
        cells = []
        for column in report.columns:
            text, marks = _cell_text(report, cid, column.metric)
            text = f"**{text}**" if "best" in marks else f"<u>{text}</u>" if "second" in marks else text
            cells.append(text + (DAGGER if "dagger" in marks else ""))
        lines.append(_md_row([_label(report, cid), str(report.table.at[cid, "seeds"]), *cells, *_extra(report, cid)]))
    lines += [_md_row([f"*{row.label}*", "–", *base_cells(report, row)]) for row in report.base]
    for number, (prefix, _) in enumerate(_comparisons(report), start=2):
        headers = significance_headers(report, prefix)
        lines += ["", f"**Table {number}.** {significance_caption(report, prefix)}", "", _md_row(headers)]
        lines.append("| " + " | ".join([":--"] + ["--:"] * (len(headers) - 1)) + " |")
        lines += [_md_row(row) for row in significance_rows(report, prefix)]
        notes = significance_notes(report, prefix)
        lines += ["", *(f"- note: {n}" for n in notes)] if notes else []
    if report.notes:
        lines += ["", *(f"- note: {n}" for n in report.notes)]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


# --- CSV --------------------------------------------------------------------------------------------
def csv_frame(report: Report) -> pd.DataFrame:
    """Raw numbers (metric units as logged), one row per configuration, for anyone re-analysing them."""
    out = pd.DataFrame(index=report.table.index)
    out.index.name = "config_id"
    out["label"] = report.table["label"]
    out["method"] = report.table["method"]
    out["seeds"] = report.table["seeds"]
    out["seed_list"] = report.table["seed_list"]
    for column in report.columns:
        out[f"{column.title} mean"] = report.table[f"{column.metric} mean"]
        out[f"{column.title} std (ddof=1)"] = report.table[f"{column.metric} std"]
    out["params"] = report.table["params"]
    out["adapter_flops_per_token"] = report.table["flops_per_token"]
    out["train_s mean"] = report.table["train_s"]
    for prefix, _ in COMPARISONS:
        for field, name in csv_significance_columns().items():
            values = report.significance[f"{prefix} {field}"]
            if field == "seeds_needed":  # a count, empty where it cannot be said (the note says why)
                values = pd.to_numeric(values).astype("Int64")
            out[f"{report.headline.title} {prefix} {name}"] = values
    base = [  # the reference rows: their scores, no seeds, no tests
        {"label": row.label, "method": "base", "seeds": 0, "seed_list": "", "params": 0}
        | {f"{c.title} mean": row.values.get(c.metric, math.nan) for c in report.columns}
        for row in report.base
    ]
    if not base:
        return out
    index = pd.Index([f"base:{row.run_id}" for row in report.base], name=out.index.name)
    return pd.concat([out, pd.DataFrame(base, index=index)])


def csv_significance_columns() -> dict[str, str]:
    """Significance field → the CSV column's name, which says what the number is."""
    ci = f"{CONFIDENCE:.0%} CI ({INTERVAL})"
    return {
        "diff": "diff",
        "ci_low": f"{ci} low",
        "ci_high": f"{ci} high",
        "df": "df (Welch-Satterthwaite)",
        "p": "p (Welch)",
        "p_holm": "p (Holm)",
        "significant": f"significant (Holm p < {ALPHA})",
        "detectable": f"detectable diff ({POWER:.0%} power)",
        "seeds_needed": f"seeds a side to detect diff ({POWER:.0%} power)",
        "note": "note",
    }


# --- LaTeX ------------------------------------------------------------------------------------------
_TEX_SPECIAL = {
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
    "<": "$<$",
    ">": "$>$",
    "Δ": r"$\Delta$",
    "α": r"$\alpha$",
}


def tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text).replace(WARN, r"$^{\ast}$")


def latex(report: Report) -> str:
    """A booktabs table like the paper's (benchmarks, Avg., Params), then the significance tables."""
    titles = [tex_escape(c.title if c.title != "Average" else "Avg.") for c in report.columns]
    spec = "l" + "c" * (len(titles) + 1)
    note = caption(report).replace(DAGGER, r"$^\dagger$").replace("±", r"$\pm$")
    if report.warnings:
        note += r" $^{\ast}$: fewer than three seeds."
    lines = [
        r"% requires \usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{tex_escape_keep(note)}}}",
        rf"\label{{tab:{tex_label(report.sweep)}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(["Method", *titles, "Params"]) + r" \\",
        r"\midrule",
    ]
    for cid in report.table.index:
        cells = []
        for column in report.columns:
            text, marks = _cell_text(report, cid, column.metric)
            text = text.replace(" ± ", r"$\pm$")
            text = rf"\textbf{{{text}}}" if "best" in marks else rf"\underline{{{text}}}" if "second" in marks else text
            cells.append(text + (r"$^\dagger$" if "dagger" in marks else ""))
        lines.append(
            " & ".join([tex_escape(_label(report, cid)), *cells, human(report.table.at[cid, "params"])]) + r" \\"
        )
    if report.base:
        lines.append(r"\midrule")
    for row in report.base:
        cells = base_cells(report, row)[: len(report.columns)]
        lines.append(" & ".join([rf"\textit{{{tex_escape(row.label)}}}", *cells, "0"]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    for prefix, _ in _comparisons(report):
        headers = [tex_escape(h) for h in significance_headers(report, prefix)]
        sig_caption = tex_escape_keep(significance_caption(report, prefix).replace(DAGGER, TEX_DAGGER))
        lines += [
            "",
            r"\begin{table}[t]",
            r"\centering",
            r"\small",
            rf"\caption{{{sig_caption}}}",
            r"\begin{tabular}{l" + "r" * (len(headers) - 1) + "}",
            r"\toprule",
            " & ".join(headers) + r" \\",
            r"\midrule",
        ]
        for row in significance_rows(report, prefix):
            cells = [tex_escape(row[0])] + [
                tex_escape(c).replace(DAGGER, r"$^\dagger$").replace("±", r"$\pm$") for c in row[1:]
            ]
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def tex_escape_keep(text: str) -> str:
    """Escape a caption but keep the math we inserted ($\\pm$, $^\\dagger$)."""
    keep = {r"$\pm$": "\0PM\0", r"$^\dagger$": "\0DG\0", r"$^{\ast}$": "\0AS\0"}
    for math_text, token in keep.items():
        text = text.replace(math_text, token)
    text = tex_escape(text).replace("±", r"$\pm$")
    for math_text, token in keep.items():
        text = text.replace(token, math_text)
    return text


def tex_label(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-:" else "-" for ch in name)
