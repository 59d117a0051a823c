"""``fastmlp`` unchanged, except that the first training step is timed: ``python fastmlp_first_step.py train ...``.

``compare_peers.py --startup`` and ``--rss`` run it as a child process.

``Trainer.steps`` is wrapped as soon as ``fastmlp.training.train`` is imported (where and when the CLI
imports it, so its start-up is not reordered): calls of zero steps (loading the compiled kernel)
pass through and print when they are done; the first call with steps prints when it starts,
runs that one step, prints when it is done, and exits.
"""
import importlib.machinery
import os
import sys
import time


def patch(train_module):
    original = train_module.Trainer.steps

    def steps(self, order, first, n_steps, lr, epoch=0):
        if n_steps == 0:
            out = original(self, order, first, 0, lr, epoch)
            print(f"kernel-loaded-at {time.time():.6f}", flush=True)
            return out
        print(f"first-step-at {time.time():.6f}", flush=True)
        original(self, order, first, 1, lr, epoch)
        print(f"first-step-done-at {time.time():.6f}", flush=True)
        os._exit(0)
    train_module.Trainer.steps = steps


class Hook:
    def find_spec(self, name, path=None, target=None):
        if name != "fastmlp.training.train":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            patch(module)
        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, Hook())
from fastmlp.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
