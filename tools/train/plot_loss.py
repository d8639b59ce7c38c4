#!/usr/bin/env python3
"""Plot the loss curve of a training run from its train_log.json (needs matplotlib).

    python3 tools/train/plot_loss.py OUT/train_log.json docs/model-loss.png
"""
import json
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    log_path, png_path = sys.argv[1], sys.argv[2]
    run_log = json.load(open(log_path))
    run = run_log["runs"][-1]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    tok = [c["tokens"] / 1e6 for c in run["curve"]]
    ax.plot(tok, [c["train_loss"] for c in run["curve"]], lw=0.8, alpha=0.8,
            label="train (batch mean, dropout on)")
    ev = run["evals"][1:]
    ax.plot([e["tokens"] / 1e6 for e in ev], [e["val_loss"] for e in ev], "o-", ms=3,
            label="validation (early stopping)")
    ax.plot([e["tokens"] / 1e6 for e in ev], [e["heldout_loss"] for e in ev], "s-", ms=3, label="held-out")
    best = run["best_step"]
    best_eval = next(e for e in ev if e["step"] == best)
    ax.axvline(best_eval["tokens"] / 1e6, color="gray", ls=":", lw=1)
    ax.annotate(f"kept: step {best}", (best_eval["tokens"] / 1e6, best_eval["heldout_loss"]),
                textcoords="offset points", xytext=(-80, 25), fontsize=8,
                arrowprops={"arrowstyle": "->", "lw": 0.6})
    epoch = run_log["data"]["train_tokens"] / 1e6
    top = ax.secondary_xaxis("top", functions=(lambda x: x / epoch, lambda e: e * epoch))
    top.set_xlabel("epochs over the training text")
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_ylim(1.5, 6.0)
    ax.grid(alpha=0.3)
    m = run_log["model"]
    final = run_log["final"]
    ax.set_title(f"BitNet b1.58, {m['params']['total'] / 1e6:.1f} M parameters, {run_log['device']}: "
                 f"held-out perplexity {math.exp(final['heldout_loss_transformers_fp32']):.2f}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path)


if __name__ == "__main__":
    main()
