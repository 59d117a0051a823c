"""The PyTorch twin of ``fastmlp train --preset best``: the same recipe, for a side-by-side time to
99.0% and 99.3% test accuracy.

Same data (read and verified by fastmlp's data layer), same hold-out, model (784-H...-10, ReLU,
``W ~ N(0, 1/sqrt(n_in))``, ``b = 0``), input and hidden dropout, per-image random affine map
(rotation, scale, shear, shift) and elastic distortion (noise on a coarse K x K grid, Gaussian
smoothing, times alpha / spacing, bilinear upsampling: fastmlp's construction), applied in one
bilinear ``F.grid_sample`` (zeros outside), AdamW with decoupled weight decay on the weights only,
one-cycle eta per step (``OneCycleLR``, cosine, momentum not cycled), label smoothing, and an
exponential moving average of the parameters (decay ``min(ema, (1 + t) / (10 + t))``) that is
evaluated. Its random numbers are torch's, not fastmlp's, so the runs are alike, not equal.

    python benchmarks/peers/torch_recipe.py --data-dir DIR [--epochs 120] [--threads 2] [--val-size 0] \\
        [--hidden 1024,1024] [--dataset mnist] [--seed 0]

Defaults are the ``best`` preset's (:data:`fastmlp.config.PRESETS`); every option of the preset
can be given as ``--name value`` (``--dropout-input 0.1``, ``--elastic-alpha 34``, ...). Prints one
line per epoch and, at the end, the training time at which test accuracy first reached 99.0% and
99.3% (``time-to 99.0%: ...``).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch_model import build_model, torch_threads

from fastmlp.config import RULES, TrainConfig
from fastmlp.data.datasets import load_dataset, validation_split

THRESHOLDS = (0.990, 0.993)


def parse_args() -> tuple[TrainConfig, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    best = TrainConfig.preset("best")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--hidden", default=",".join(map(str, best.hidden_sizes)))
    for rule in RULES.values():
        if rule.flag is not None:
            p.add_argument(rule.flag, dest=rule.name, type=rule.type, default=getattr(best, rule.name))
    args = p.parse_args()
    fields = {name: getattr(args, name) for name, rule in RULES.items() if rule.flag is not None}
    config = TrainConfig(hidden_sizes=tuple(int(h) for h in args.hidden.split(",")), dataset=args.dataset, **fields)
    return config.validate(), args


class Warp:
    """Random affine + elastic warps of (B, side, side) batches, by one ``grid_sample``."""

    def __init__(self, c: TrainConfig, side: int, gen: torch.Generator):
        self.c, self.side, self.gen = c, side, gen
        ys, xs = torch.meshgrid(torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32),
                                indexing="ij")
        self.pixels = torch.stack([xs, ys], -1)  # (side, side, 2): (x, y)
        self.elastic = c.augment == "elastic" and c.elastic_alpha > 0
        if self.elastic:
            self.K = int(min(side, max(2, 1 + round((side - 1) / c.elastic_sigma))))
            spacing = (side - 1) / (self.K - 1)
            sigma_c = c.elastic_sigma / spacing
            r = int(3 * sigma_c + 0.5)
            taps = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma_c) ** 2)
            self.taps, self.r, self.gain = taps / taps.sum(), r, c.elastic_alpha / spacing

    def uniform(self, *shape) -> torch.Tensor:
        return 2 * torch.rand(*shape, generator=self.gen) - 1

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        c, B, side = self.c, x.shape[0], self.side
        angle = torch.deg2rad(c.aug_rotate * self.uniform(B))
        s, sh = 1 + c.aug_scale * self.uniform(B), c.aug_shear * self.uniform(B)
        t = c.aug_shift * self.uniform(B, 2)
        co, si = torch.cos(angle), torch.sin(angle)
        A = torch.stack([torch.stack([co, co * sh - si], -1), torch.stack([si, si * sh + co], -1)], -2) * s[:, None, None]
        cen = (side - 1) / 2
        p = self.pixels.expand(B, side, side, 2)
        if self.elastic:
            noise = self.uniform(B * 2, 1, self.K, self.K)
            k = self.taps.view(1, 1, -1, 1)
            field = F.conv2d(F.conv2d(noise, k, padding=(self.r, 0)), k.transpose(2, 3), padding=(0, self.r))
            field = F.interpolate(field * self.gain, size=(side, side), mode="bilinear", align_corners=True)
            p = p + field.view(B, 2, side, side).permute(0, 2, 3, 1)
        q = torch.einsum("bij,bhwj->bhwi", torch.linalg.inv(A), p - cen - t[:, None, None, :]) + cen
        grid = 2 * q / (side - 1) - 1  # align_corners=True: pixel i at -1 + 2 i / (side - 1)
        return F.grid_sample(x.view(B, 1, side, side), grid, mode="bilinear", padding_mode="zeros",
                             align_corners=True).view(B, -1)


def main() -> None:
    c, args = parse_args()
    torch_threads(args.threads)
    torch.manual_seed(c.seed)
    gen = torch.Generator().manual_seed(c.seed)
    ds = load_dataset(c.dataset, args.data_dir)
    train_x, train_y = torch.from_numpy(ds.train_images.copy()), torch.from_numpy(ds.train_labels.astype(np.int64))
    test_x, test_y = torch.from_numpy(ds.test_images.copy()), torch.from_numpy(ds.test_labels.astype(np.int64))
    fit_idx, val_idx = (torch.from_numpy(a) for a in validation_split(len(train_x), c.val_size))
    side = int(round(math.sqrt(train_x.shape[1])))
    model = build_model([train_x.shape[1], *c.hidden_sizes, ds.num_classes], c.dropout_input, c.dropout)
    decay = [p for p in model.parameters() if p.ndim == 2]
    no_decay = [p for p in model.parameters() if p.ndim == 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": c.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=c.lr, betas=(c.beta1, c.beta2), eps=c.eps)
    steps_per_epoch = -(-len(fit_idx) // c.batch_size)
    sched = None
    if c.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=c.lr, total_steps=c.epochs * steps_per_epoch,
                                                    pct_start=min(0.99, c.warmup / c.epochs), anneal_strategy="cos",
                                                    cycle_momentum=False, div_factor=25.0, final_div_factor=1e4)
    ema = [p.detach().clone() for p in model.parameters()] if c.ema else None
    warp = Warp(c, side, gen) if c.augment != "none" else None

    def evaluate(images, labels, rows) -> float:
        live = [p.detach().clone() for p in model.parameters()] if ema else None
        model.eval()
        with torch.no_grad():
            if ema:
                for p, e in zip(model.parameters(), ema):
                    p.copy_(e)
            correct = 0
            for lo in range(0, len(rows), 1024):
                idx = rows[lo:lo + 1024]
                correct += (model(images[idx].float().div_(255.0)).argmax(1) == labels[idx]).sum().item()
            if ema:
                for p, w in zip(model.parameters(), live):
                    p.copy_(w)
        model.train()
        return correct / len(rows)

    reached: dict[float, float] = {}
    train_time, t_step = 0.0, 0
    for epoch in range(1, c.epochs + 1):
        t_epoch = time.perf_counter()
        order = fit_idx[torch.randperm(len(fit_idx), generator=gen)]
        loss_sum, correct = 0.0, 0
        for lo in range(0, len(order), c.batch_size):
            idx = order[lo:lo + c.batch_size]
            x, y = train_x[idx].float().div_(255.0), train_y[idx]
            if warp is not None:
                x = warp(x)
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=c.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            t_step += 1
            if ema is not None:
                a = min(c.ema, (1 + t_step) / (10 + t_step))
                with torch.no_grad():
                    torch._foreach_mul_(ema, a)
                    torch._foreach_add_(ema, [p.detach() for p in model.parameters()], alpha=1 - a)
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == y).sum().item()
        train_time += time.perf_counter() - t_epoch
        n = len(order)
        val_acc = evaluate(train_x, train_y, val_idx) if len(val_idx) else float("nan")
        test_acc = evaluate(test_x, test_y, torch.arange(len(test_x)))
        for th in THRESHOLDS:
            if test_acc >= th and th not in reached:
                reached[th] = train_time
        print(f"epoch {epoch:>3}  loss* {loss_sum / n:.4f}  train* {100 * correct / n:6.2f}%  val {100 * val_acc:6.2f}%  "
              f"test {100 * test_acc:6.2f}%  {n / (time.perf_counter() - t_epoch):8.0f} samples/s  "
              f"train_seconds {train_time:.1f}", flush=True)
    for th in THRESHOLDS:
        print(f"time-to {100 * th:.1f}%: " + (f"{reached[th]:.1f} s of training" if th in reached else "not reached"))


if __name__ == "__main__":
    main()
