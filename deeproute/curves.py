"""Training-curve figure: loss, F1, precision and recall per epoch, train and validation."""

from __future__ import annotations

import os
from pathlib import Path


def plot_training_curves(history: list[dict], path: str | os.PathLike) -> None:
    """Draw the four training curves of `history` (one dict per epoch) into an image file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    figure, axes = plt.subplots(1, 4, figsize=(16, 3.6), constrained_layout=True)
    axes[0].plot(epochs, [row["train_loss"] for row in history], "o-", label="train")
    axes[0].set_title("weighted cross-entropy")
    for axis, key in zip(axes[1:], ("f1", "precision", "recall")):
        axis.plot(epochs, [row["train"][key] for row in history], "o-", label="train subset")
        axis.plot(epochs, [row["val"][key] for row in history], "s-", label="validation")
        axis.set_title(key if key != "f1" else "F1 (all pixels, 'on' positive)")
        axis.set_ylim(0.0, 1.0)
    for axis in axes:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(loc="best")
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp{target.suffix}")
    figure.savefig(temporary, dpi=90)
    plt.close(figure)
    os.replace(temporary, target)
