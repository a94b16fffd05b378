"""The `nad` command line."""

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from schemas.firewall import CLASS_NAMES
from schemas.generation import TrafficConfig, get_preset
from tasks.generate import DaySummary, generate_dataset

app = typer.Typer(
    help="nad-fusion: network anomaly detection on firewall logs.",
    no_args_is_help=True,
    add_completion=False,
)


class PresetChoice(StrEnum):
    tiny = "tiny"
    demo = "demo"
    full = "full"


@app.callback()
def _root() -> None:
    """Network anomaly detection by model fusion, on ZYELL-format firewall logs."""


def format_counts_table(rows: list[tuple[str, str, int, dict[str, int]]]) -> str:
    """A per-day, per-class table with a total line."""
    header = ["day", "split", "rows", *CLASS_NAMES]
    body = [
        [day, split, f"{total:,}", *(f"{counts.get(c, 0):,}" for c in CLASS_NAMES)]
        for day, split, total, counts in rows
    ]
    total = ["total", "", f"{sum(r[2] for r in rows):,}"] + [
        f"{sum(r[3].get(c, 0) for r in rows):,}" for c in CLASS_NAMES
    ]
    table = [header, *body, total]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.rjust(w) if i > 1 else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in table
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Folder for the day CSVs (created if missing).")],
    preset: Annotated[PresetChoice, typer.Option(help="Data set size.")] = PresetChoice.demo,
    seed: Annotated[int, typer.Option(help="Same seed, byte-identical files.")] = 7,
    label_noise: Annotated[float | None, typer.Option(help="Share of attack rows mislabelled.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; write nothing.")] = False,
) -> None:
    """Generate ZYELL-format firewall days: labelled training days, unlabelled test days plus truth."""
    traffic = TrafficConfig() if label_noise is None else TrafficConfig(label_noise=label_noise)
    plan = get_preset(preset.value, traffic)
    if dry_run:
        rows = [
            (day.file_name, day.split, day.rows, {"Normal": day.normal_rows, **day.attacks})
            for day in plan.days
        ]
        typer.echo(f"plan of preset {plan.name} (before label noise of {traffic.label_noise:.1%}):")
        typer.echo(format_counts_table(rows))
        return
    summaries: list[DaySummary] = generate_dataset(plan, seed, out)
    typer.echo(f"wrote {len(summaries)} days of preset {plan.name} (seed {seed}) to {out}/")
    typer.echo(format_counts_table([(s.file, s.split, s.rows, s.class_counts) for s in summaries]))
    typer.echo(f"test-day labels are in {out}/truth/; the manifest is {out}/manifest.json")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
