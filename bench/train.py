"""Training speed on the full bundled snapshot, against the machine's own matmul rate and the original loop.

For each deep variant: seconds per epoch, training windows per second and achieved GFLOP/s (analytic forward FLOPs
x 3 for forward + backward, see ``finmlops.models.forward_flops``), compared with the floor set by a large float32
matmul measured in the same run. Also times the original system's loop (a per-sample ``Dataset`` + ``DataLoader``,
batch 64) for a few epochs, and the wall time of a full walk-forward evaluation of every variant and baseline.

    python bench/train.py                 # everything, test years 2014-2023
    python bench/train.py --quick         # walk-forward over 2 test years only
    python bench/train.py --no-walk-forward --epochs 2 --json out.json

Other processes on the machine slow 2-thread training several-fold: the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from finmlops.data import load_snapshot
from finmlops.features import FeatureScaler, compute_features, make_target, make_windows
from finmlops.models import BASELINES, PRESETS, VARIANTS, build_network, forward_flops
from finmlops.training import TrainConfig, deterministic, train_network, walk_forward_predictions

FLOOR_GOAL = 1.5  # the goal: an epoch within 1.5x the time the matmul floor allows for its FLOPs
ORIGINAL_EPOCHS = 50  # the original trained 50 epochs without early stopping


def matmul_gflops(n: int = 4096, repeats: int = 3) -> float:
    """Best-of-``repeats`` float32 ``n x n`` matmul rate in GFLOP/s (2 n^3 FLOPs each)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class PerSampleDataset(Dataset):
    """The original system's input path: one tensor per sample, collated by the DataLoader."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor(self.x[i], dtype=torch.float32), torch.tensor(self.y[i], dtype=torch.float32)


def reference_epoch_seconds(name: str, x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> float:
    """Mean seconds per epoch of the original loop: DataLoader batch 64, Adam, no early stopping or clipping."""
    variant = VARIANTS[name]
    torch.manual_seed(seed)
    net = build_network(variant, x.shape[2])
    optimizer = torch.optim.Adam(net.parameters(), lr=variant.lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    loader = DataLoader(PerSampleDataset(x, y), batch_size=64, shuffle=True)
    net.train()
    start = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            loss_fn(net(xb), yb).backward()
            optimizer.step()
    return (time.perf_counter() - start) / epochs


def variant_speed(name: str, universe: Any, epochs: int, threads: int, floor: float, ref_epochs: int) -> dict:
    """One variant's (or paper model's, ``PRESETS``) training speed over every labelled window of ``universe``."""
    variant = PRESETS[name]
    windows = make_windows(compute_features(universe, variant.feature_set), make_target(universe), variant.seq_len)
    x = FeatureScaler().fit_transform(windows.X)
    y = windows.y.astype(np.float32)
    n, f = x.shape[0], x.shape[2]
    val = np.random.default_rng(0).choice(n, size=min(2000, n), replace=False)
    config = TrainConfig(epochs=epochs, patience=epochs + 1, threads=threads, device="cpu", verbosity="silent")
    with deterministic(0, threads):
        net = build_network(variant, f)
        outcome = train_network(net, x, y, x[val], y[val], variant, config)
        # The first epoch pays one-off allocation costs; report the steady state when there is one.
        seconds = float(np.median([h["seconds"] for h in outcome.history[1:] or outcome.history]))
        ref = reference_epoch_seconds(name, x, y, ref_epochs, 0) if ref_epochs else float("nan")
    gflop = 3 * forward_flops(variant, f) * n / 1e9
    return {
        "variant": name,
        "windows": n,
        "features": f,
        "batch_size": variant.batch_size,
        "seconds_per_epoch": seconds,
        "samples_per_second": n / seconds,
        "epoch_gflop": gflop,
        "achieved_gflops": gflop / seconds,
        "floor_seconds": gflop / floor,
        "ratio_to_floor": seconds / (gflop / floor),
        "reference_seconds_per_epoch": ref,
        "reference_ratio_to_floor": ref / (gflop / floor),
        "speedup_vs_reference": ref / seconds,
        # Whole runs, extrapolated from the measured seconds per epoch: the original's 50 epochs against our
        # TrainConfig maximum (early stopping usually ends sooner, so the real ratio is at least this).
        "reference_run_seconds_50_epochs": ref * ORIGINAL_EPOCHS,
        "run_seconds_max_epochs": seconds * TrainConfig().epochs,
        "run_speedup_at_least": ref * ORIGINAL_EPOCHS / (seconds * TrainConfig().epochs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Walk-forward over test years 2022-2023 only.")
    parser.add_argument("--epochs", type=int, default=3, help="Epochs timed per variant.")
    parser.add_argument("--reference-epochs", type=int, default=1, help="Epochs of the original loop (0: skip).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--no-walk-forward", action="store_true")
    parser.add_argument("--json", dest="json_path", help="Also write the results to this JSON file.")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    universe = load_snapshot()
    floor = matmul_gflops()
    print(f"matmul floor: {floor:.1f} GFLOP/s on {args.threads} threads (load average {load_before[0]:.2f})")
    header = f"{'variant':12} {'windows':>8} {'s/epoch':>8} {'win/s':>8} {'GFLOP':>7} {'GFLOP/s':>8} {'xfloor':>7}"
    print(header + f" {'orig s/ep':>9} {'orig xfloor':>11} {'speedup':>8}")
    rows = []
    for name in args.variants.split(","):
        r = variant_speed(name, universe, args.epochs, args.threads, floor, args.reference_epochs)
        rows.append(r)
        print(
            f"{name:12} {r['windows']:8d} {r['seconds_per_epoch']:8.2f} {r['samples_per_second']:8.0f} "
            f"{r['epoch_gflop']:7.1f} {r['achieved_gflops']:8.1f} {r['ratio_to_floor']:7.2f} "
            f"{r['reference_seconds_per_epoch']:9.2f} {r['reference_ratio_to_floor']:11.2f} "
            f"{r['speedup_vs_reference']:8.2f}",
            flush=True,
        )
    names = args.variants.split(",")
    meets = [n for n, r in zip(names, rows, strict=True) if r["ratio_to_floor"] <= FLOOR_GOAL]
    max_epochs = TrainConfig().epochs
    for r in rows:
        print(
            f"{r['variant']:12} whole run: original {ORIGINAL_EPOCHS} epochs "
            f"{r['reference_run_seconds_50_epochs']:7.1f}s "
            f"vs ours at most {max_epochs} epochs {r['run_seconds_max_epochs']:7.1f}s: "
            f"{r['run_speedup_at_least']:.1f}x faster at least (extrapolated from s/epoch)"
        )
    print(f"within {FLOOR_GOAL}x the floor: {', '.join(meets) or 'none'}; missing it: "
          f"{', '.join(n for n in names if n not in meets) or 'none'}")  # fmt: skip
    result: dict[str, Any] = {"threads": args.threads, "matmul_gflops": floor, "variants": rows, "meets_goal": meets}
    if not args.no_walk_forward:
        years = [2022, 2023] if args.quick else list(range(2014, 2024))
        start = time.perf_counter()
        preds = walk_forward_predictions(
            universe, variants=list(VARIANTS), baselines=BASELINES, test_years=years, threads=args.threads,
            device="cpu", progress=False, seed=42,
        )  # fmt: skip
        wall = time.perf_counter() - start
        per_model: dict[str, float] = {}
        for fit in preds.attrs["fit_seconds"]:
            per_model[fit["model"]] = per_model.get(fit["model"], 0.0) + fit["seconds"]
        accuracy = {m: float(np.mean((g["prob_up"] > 0.5) == (g["y_true"] == 1))) for m, g in preds.groupby("model")}
        result["walk_forward"] = {
            "test_years": years, "wall_seconds": wall, "fit_seconds": per_model, "rows_per_model":
            int(len(preds) / preds["model"].nunique()), "accuracy": accuracy,
        }  # fmt: skip
        print(
            f"walk-forward {years[0]}-{years[-1]}, {len(VARIANTS)} variants + {len(BASELINES)} baselines: {wall:.0f}s"
        )
        for m, s in per_model.items():
            print(f"  {m:12} fits {s:7.1f}s  pooled accuracy {accuracy[m]:.4f}")
    result["load_average"] = {"before": load_before, "after": os.getloadavg()}
    print(f"load average before {load_before[0]:.2f}, after {result['load_average']['after'][0]:.2f}")
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
