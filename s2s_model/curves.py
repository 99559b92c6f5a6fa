"""Training curves as a PNG: loss and validation ROUGE against updates (no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from s2s_model.atomic import atomic_write


def write_curves(
    history: Sequence[dict[str, Any]], train_curve: Sequence[Sequence[float]], path: Path
) -> None:
    """Plot ``history`` (validation records) and ``train_curve`` ([step, loss] pairs)."""
    # The object API with an Agg canvas draws without touching pyplot's global backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4))
    FigureCanvasAgg(figure)
    loss_axes, rouge_axes = figure.subplots(1, 2)
    if train_curve:
        train_steps, train_losses = zip(*train_curve, strict=True)
        loss_axes.plot(
            train_steps,
            train_losses,
            label="train loss (label-smoothed, moving average)",
            color="tab:blue",
        )
    steps = [h["step"] for h in history]
    loss_axes.plot(steps, [h["valid_nll"] for h in history], "o-", label="valid NLL")
    loss_axes.set(xlabel="update", ylabel="loss per token", title="loss")
    loss_axes.legend()
    for name in ("rouge1", "rouge2", "rougeL"):
        if all(name in h for h in history):
            rouge_axes.plot(steps, [h[name] for h in history], "o-", label=name)
    rouge_axes.set(xlabel="update", ylabel="F1 x 100", title="validation ROUGE")
    rouge_axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temporary: figure.savefig(str(temporary), dpi=80, format="png"))
