"""The one printer of a plan: `plan`, `render --dry-run` and `render` all show what the plan
decided (ovi_studio/plan.py), one line a take, aligned, never wrapped, so logs can be grepped."""
from __future__ import annotations

from collections.abc import Callable

from ovi_studio.plan import Plan, PlannedTake


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def plan_lines(plan: Plan, rendering_only: bool = False) -> list[str]:
    """The header, a line per take (only the takes that render, with `rendering_only`) and the
    summary: what renders, what it costs, where it goes."""
    variant = plan.variant
    lines = [f"plan for {plan.storyboard.path} -> {plan.out_dir} ({variant.name}, {variant.frames} "
             f"frames per take, engine {plan.engine.name})"]
    steps = plan.to_render if rendering_only else plan.steps
    cells = [_cells(step) for step in steps]
    widths = [max((len(row[i]) for row in cells), default=0) for i in range(5)]
    for row in cells:
        lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[5])
    lines.append(f"{len(plan.to_render)} of {len(plan.steps)} takes to render, estimated GPU time "
                 f"{duration(plan.total_seconds_estimate)} (cost model: ovi_studio/cost.py); "
                 f"output in {plan.out_dir}")
    if plan.blocked:
        lines.append(f"{len(plan.blocked)} take(s) cannot render (blocked: see above)")
    return lines


def print_plan(plan: Plan, echo: Callable[[str], None], rendering_only: bool = False) -> None:
    for line in plan_lines(plan, rendering_only):
        echo(line)


def _cells(step: PlannedTake) -> tuple[str, ...]:
    mode = f"extends {step.parent}" if step.mode == "extend" else step.mode
    size = "?" if step.height is None else f"{step.width}x{step.height}"
    why = f": {', '.join(step.reasons)}" if step.reasons and step.action in ("render", "reuse", "blocked") else ""
    return (f"{step.shot.id}/take{step.take}", mode, size, f"seed {step.seed}",
            f"~{duration(step.estimate_seconds)}", step.action + why)
