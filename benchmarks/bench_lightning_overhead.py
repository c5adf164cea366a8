"""How much Lightning costs on top of a plain PyTorch loop for one fold of a network method (training only).

A focused tool for one method's training (``trainer.batching=off``: one network per module); ``make bench``
(``benchmarks/bench.py``) is the full benchmark and reuses :func:`plain_loop` from here.

Trains the method of ``conf/method/<method>.yaml`` on fold 0 of MIMIC-II (or random 0/1 data of the same shape
with ``--random`` or when the CSV is missing) twice per repetition: through the explainer (Lightning Trainer,
callbacks) and through a plain loop doing the same steps (same network and seed, same optimiser settings, the same
L1 gradient and pruning functions). Repetitions alternate the two, in one process, with ``torch.set_num_threads(1)``.
Prints the median times and their ratio, and checks that both trained the same weights (bit for bit).

    .venv/bin/python benchmarks/bench_lightning_overhead.py                    # pruning, 5001 epochs
    .venv/bin/python benchmarks/bench_lightning_overhead.py --method psi --epochs 1000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lenbench.callbacks.l1 import L1Regularization
from lenbench.callbacks.pruning import FanInPruning, FeaturePruning, prune_fan_in, prune_features
from lenbench.config import default_data_root
from lenbench.explainers.network import NetworkExplainer
from lenbench.nn.allocator import keep_freed_buffers
from lenbench.nn.trainer import set_seed

REPO = Path(__file__).resolve().parents[1]
METHODS = ("pruning", "weights", "psi")


def load_data(root: Path | None, random_data: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """Fold 0's train+validation rows of MIMIC-II, or random 0/1 data of that shape (16 % positives)."""
    if not random_data and root is not None and (root / "mimic-ii" / "full_cohort_data.csv").is_file():
        from lenbench.data.mimic import load_mimic
        from lenbench.data.split import split_fold

        fold = split_fold(load_mimic(root, download=False), 0)
        return fold.x_trainval, fold.y_trainval, "MIMIC-II fold 0"
    rng = np.random.default_rng(0)
    x = (rng.random((1598, 90)) < 0.5).astype(np.float32)
    y = (rng.random(1598) < 0.16).astype(np.int64)
    return x, y, "random 0/1 data [1598, 90]"


def make_explainer(method: str, epochs: int) -> NetworkExplainer:
    """The explainer exactly as ``conf/method/<method>.yaml`` builds it (seed 42, CPU trainer)."""
    trainer = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "trainer" / "cpu.yaml"))
    assert isinstance(trainer, dict)
    cfg = OmegaConf.load(REPO / "conf" / "method" / f"{method}.yaml")
    cfg.explainer.seed = 42
    cfg.explainer.trainer = trainer
    if "target_class" in cfg.explainer:
        cfg.explainer.target_class = 1
    cfg.explainer.epochs = epochs
    explainer = instantiate(cfg.explainer)
    assert isinstance(explainer, NetworkExplainer)
    return explainer


def plain_loop(explainer: NetworkExplainer, x: np.ndarray, y: np.ndarray) -> tuple[float, torch.nn.Module]:
    """The same training as ``explainer.train(x, y)``, in a plain loop; returns (seconds, network)."""
    start = time.perf_counter()
    if hasattr(explainer, "_n_classes"):
        explainer._n_classes = max(2, int(y.max()) + 1)
    training = explainer.training
    set_seed(training.seed)
    net = explainer.build_network(x.shape[1])
    cls = torch.optim.AdamW if training.optimizer == "adamw" else torch.optim.Adam
    optimizer = cls(net.parameters(), lr=training.lr, weight_decay=training.weight_decay)
    criterion = explainer.criterion()
    inputs, targets = torch.from_numpy(x), explainer.targets(y)
    l1s = [cb for cb in training.callbacks if isinstance(cb, L1Regularization)]
    features = [cb for cb in training.callbacks if isinstance(cb, FeaturePruning)]
    fan_ins = [cb for cb in training.callbacks if isinstance(cb, FanInPruning)]
    fan_in_done = False
    for epoch in range(training.epochs):
        optimizer.zero_grad()
        loss = criterion(net(inputs), targets)
        loss.backward()
        for l1 in l1s:
            l1.apply_gradient(net)
        optimizer.step()
        for cb in features:
            if cb.fires_at(epoch):
                prune_features(cb.target(net), cb.threshold)
        for cb in fan_ins:
            if not fan_in_done and epoch > cb.epoch:
                prune_fan_in(net, cb.fan_in)
                fan_in_done = True
    return time.perf_counter() - start, net


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--method", choices=METHODS, default="pruning")
    parser.add_argument("--epochs", type=int, default=5001)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--data-root", type=Path, default=None, help="folder holding mimic-ii/ (default: env)"
    )
    parser.add_argument("--random", action="store_true", help="use random data of MIMIC-II's shape")
    parser.add_argument("--output", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.repeats < 1:
        parser.error("--epochs and --repeats must be >= 1")

    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    keep_freed_buffers()  # as every lenbench job does, for both the framework and the plain loop
    root = args.data_root or Path(default_data_root())
    x, y, source = load_data(root, args.random)

    lightning_times, plain_times = [], []
    identical = True
    for _ in range(args.repeats):
        explainer = make_explainer(args.method, args.epochs)
        start = time.perf_counter()
        explainer.train(x, y)
        lightning_times.append(time.perf_counter() - start)
        seconds, net = plain_loop(make_explainer(args.method, args.epochs), x, y)
        plain_times.append(seconds)
        a, b = explainer.network.state_dict(), net.state_dict()
        identical &= sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)

    lightning, plain = statistics.median(lightning_times), statistics.median(plain_times)
    result = {
        "method": args.method,
        "data": source,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "lightning_s": lightning,
        "plain_s": plain,
        "ratio": lightning / plain,
        "lightning_runs_s": lightning_times,
        "plain_runs_s": plain_times,
        "identical_weights": bool(identical),
    }
    print(f"{args.method} on {source}, {args.epochs} epochs, {args.repeats} repetitions, 1 thread")
    print(f"  lightning: median {lightning:.3f} s  ({', '.join(f'{t:.3f}' for t in lightning_times)})")
    print(f"  plain:     median {plain:.3f} s  ({', '.join(f'{t:.3f}' for t in plain_times)})")
    print(f"  ratio lightning / plain: {lightning / plain:.3f}   identical weights: {identical}")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
