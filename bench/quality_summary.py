"""One table of every quality result under bench/results (quality_*.json) -> quality.md.

    python bench/quality_summary.py            # writes bench/results/quality.md and prints it

The two quality scripts (quality_tasks1.py, quality_tasks2.py) each write one JSON file per
recipe; this collects them: the issue's target, the value reached, pass or fail, epochs, time per
epoch, whether the run was full length (no --max-batches / --epochs / --quick override), and when
and where it ran. Quick (smoke) results are left out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def row(result: dict[str, Any]) -> list[str]:
    """The table row of one result file's content (either script's layout)."""
    target = result.get("target") or {}
    if "value_of" in target:  # quality_tasks2: {value_of, op, bound}, runs by name
        goal = f"{target['value_of']} {target['op']} {target['bound']}"
        runs = result.get("runs") or {}
        epochs = "/".join(_fmt(r.get("epochs")) for r in runs.values())
        per_epoch = "/".join(_fmt(r.get("seconds_per_epoch")) for r in runs.values())
    else:  # quality_tasks1: {split, metric, op, value}
        goal = (
            f"{target.get('split')} {target.get('metric')} {target.get('op')} {target.get('value')}"
        )
        epochs = _fmt(result.get("epochs"))
        per_epoch = _fmt(result.get("seconds_per_epoch"))
    machine = result.get("machine") or {}
    torch = result.get("torch") or {}
    return [
        result.get("recipe", "?"),
        goal,
        _fmt(result.get("value")),
        _fmt(result.get("passed")),
        epochs,
        per_epoch,
        _fmt(result.get("full_length")),
        _fmt(torch.get("rnncore_over_torch_time")),
        _fmt(machine.get("threads")),
        str(machine.get("date", "-"))[:10],
    ]


def summary(results_dir: Path) -> str:
    """Markdown: one row per quality_<recipe>.json in results_dir (quick runs left out)."""
    head = [
        "recipe",
        "target",
        "value",
        "met",
        "epochs",
        "s/epoch",
        "full",
        "time / torch's",
        "threads",
        "date",
    ]
    lines = [
        "# Quality of the lecture's tasks on real data",
        "",
        "Written by `python bench/quality_summary.py` from the `quality_*.json` files beside it;",
        "each comes from `bench/quality_tasks1.py` or `bench/quality_tasks2.py` (commands and",
        "recipes in those files' docstrings and in each JSON's `command`). s/epoch is wall time on",
        "the 2-core development machine, often shared with other runs: read it as an upper bound.",
        "time / torch's: rnncore's time per training batch over PyTorch's for the same recipe, in",
        "the same process at the same threads (PTB only; below 1, rnncore is faster). The script",
        "now times rnncore again on PyTorch's batches right after it; the committed PTB run",
        "predates that and divides its first epoch, shared with other runs, by PyTorch's quiet",
        "one, so the short same-conditions runs listed under the table are the fair comparison.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for path in sorted(results_dir.glob("quality_*.json")):
        if path.stem.endswith("_quick"):
            continue
        result = json.loads(path.read_text())
        lines.append("| " + " | ".join(row(result)) + " |")
    # Short PTB runs (--epochs 1 --max-batches N) on a quiet machine: both libraries' time per
    # batch under the same conditions, unlike a full run's first epoch shared with other jobs.
    speed = sorted(results_dir.glob("ptb_speed_*.json"))
    if speed:
        lines += ["", "PTB time per training batch, rnncore / PyTorch, same process, quiet:"]
    for path in speed:
        result = json.loads(path.read_text())
        torch = result.get("torch") or {}
        lines.append(
            f"- {path.name}: {torch.get('batches')} batches at {torch.get('threads')} thread(s): "
            f"{_fmt(result.get('seconds_per_batch'))} s vs {_fmt(torch.get('seconds_per_batch'))}"
            f" s, ratio {_fmt(torch.get('rnncore_over_torch_time'))}"
        )
    # The lecture's perplexity table (Mikolov et al. 2011), from bench/ptb_table.py.
    table = results_dir / "ptb_table.json"
    if table.is_file():
        rows = json.loads(table.read_text()).get("rows") or []
        lines += [
            "",
            "The lecture's PTB perplexity table (Mikolov et al. 2011), `bench/ptb_table.py` "
            "(details in ptb_table.md):",
            "",
            "| model | valid ppl | test ppl | paper, test |",
            "|---|---|---|---|",
        ]
        for r in rows:
            ours = r.get("ours") or {}
            lines.append(
                f"| {r.get('model')} | {_fmt(ours.get('valid'))} | {_fmt(ours.get('test'))} | "
                f"{_fmt(r.get('paper'))} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=HERE / "results", help="result JSON folder")
    p.add_argument("--out", type=Path, default=None, help="markdown path (default: quality.md)")
    args = p.parse_args(argv)
    text = summary(args.results)
    out = args.out or args.results / "quality.md"
    out.write_text(text)
    print(text, end="")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
