"""The PyTorch twin of ``fastmlp train``: same data, hold-out, model, initialisation, Adam settings,
per-epoch evaluation of the validation and test sets, and the same epoch line. It imports torch
and ``torch_model.py`` alone (``compare_peers.py --rss`` measures its memory beside ``fastmlp train``'s).

    python benchmarks/peers/torch_train.py --data DIR/mnist [--epochs 8] [--threads 1] [--hidden 1024] ...
"""

import gzip
import math
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F
from torch_model import build_model, torch_threads

if "-h" in sys.argv or "--help" in sys.argv:
    sys.exit(print(__doc__.strip()))

def arg(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default

data, epochs, threads = arg("--data"), int(arg("--epochs", "8")), int(arg("--threads", "1"))
hidden = [int(h) for h in arg("--hidden", "512,256").split(",")]
B, lr, lr_decay = int(arg("--batch-size", "64")), float(arg("--lr", "1e-3")), float(arg("--lr-decay", "1"))
betas, eps = (float(arg("--beta1", "0.9")), float(arg("--beta2", "0.999"))), float(arg("--eps", "1e-8"))
val_size, seed = int(arg("--val-size", "5000")), int(arg("--seed", "0"))
exit_at_first_step = "--exit-at-first-step" in sys.argv
torch_threads(threads)
torch.manual_seed(seed)

def read_idx(stem):
    path = os.path.join(data, stem)
    f = gzip.open(path + ".gz", "rb") if os.path.exists(path + ".gz") else open(path, "rb")
    with f:
        head = f.read(4)
        dims = struct.unpack(">" + "I" * head[3], f.read(4 * head[3]))
        buf = bytearray(math.prod(dims))
        view, got = memoryview(buf), 0
        while got < len(buf):
            k = f.readinto(view[got:])
            if not k:
                raise SystemExit(f"{path}: truncated")
            got += k
    return torch.frombuffer(buf, dtype=torch.uint8).reshape(dims[0], -1)

train_x, train_y = read_idx("train-images-idx3-ubyte"), read_idx("train-labels-idx1-ubyte").reshape(-1).long()
test_x, test_y = read_idx("t10k-images-idx3-ubyte"), read_idx("t10k-labels-idx1-ubyte").reshape(-1).long()
g = torch.Generator().manual_seed(seed)
perm = torch.randperm(len(train_x), generator=g)
val_idx, fit_idx = perm[:val_size], perm[val_size:]

model = build_model([train_x.shape[1], *hidden, 10])
opt = torch.optim.Adam(model.parameters(), lr=lr, betas=betas, eps=eps)

def evaluate(images, labels, rows):
    total, correct = 0.0, 0
    with torch.no_grad():
        for lo in range(0, len(rows), 1024):
            idx = rows[lo:lo + 1024]
            logits = model(images[idx].float().div_(255.0))
            y = labels[idx]
            total += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
    return total / len(rows), correct / len(rows)

t_start = time.perf_counter()
first = True
for epoch in range(1, epochs + 1):
    t_epoch = time.perf_counter()
    for group in opt.param_groups:
        group["lr"] = lr * lr_decay ** (epoch - 1)
    order = fit_idx[torch.randperm(len(fit_idx), generator=g)]
    loss_sum, correct = 0.0, 0
    for lo in range(0, len(order), B):
        if first:
            print(f"first-step-at {time.time():.6f}", flush=True)
            if exit_at_first_step:
                os._exit(0)
            first = False
        idx = order[lo:lo + B]
        x, y = train_x[idx].float().div_(255.0), train_y[idx]
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * len(idx)
        correct += (logits.argmax(1) == y).sum().item()
    train_seconds = time.perf_counter() - t_epoch
    n = len(order)
    _, val_acc = evaluate(train_x, train_y, val_idx)
    _, test_acc = evaluate(test_x, test_y, torch.arange(len(test_x)))
    print(f"epoch {epoch:>3}  loss {loss_sum / n:.4f}  train {100 * correct / n:6.2f}%  val {100 * val_acc:6.2f}%  "
          f"test {100 * test_acc:6.2f}%  {n / train_seconds:8.0f} samples/s  {time.perf_counter() - t_start:6.1f}s  "
          f"train_seconds {train_seconds:.3f}", flush=True)
