"""Training: the :class:`Trainer` that owns a run's state, and :func:`train`, the thin loop over it.

A :class:`Trainer` holds everything one training run changes (llm.c's model struct is the
picture): the model's flat parameter buffer, the gradient buffer, Adam's moments and step
count, the workspace preallocated for the batch size, and the seeded sampler. It is the only
caller of the training kernels (:func:`fastmlp.engine.step.run_call`), whose records it builds, and
the one place that picks their thread count (:class:`fastmlp.training.threads.ThreadChooser`).

One epoch is a fresh permutation of the training rows (the validation hold-out excluded), cut
into mini-batches of ``batch_size``; the last, shorter batch is kept, so every training image
is used exactly once per epoch. The random stream is used in the reference's order: first the
weights, layer by layer, then one permutation per epoch, so ``reference.train_reference`` on
the same rows and seed sees the same batches.

Each epoch yields an :class:`EpochRecord`:

* ``train_loss``, ``train_acc``: means over the epoch's mini-batches, measured as they were
  trained on (the usual running figures; no extra pass over 55,000 images): with augmentation
  or dropout, on the warped and dropped-out batches, which ``train_on`` says
  (``"plain"``, ``"augmented"``, ``"dropout"`` or ``"augmented+dropout"``);
* ``val_loss``, ``val_acc``, ``test_loss``, ``test_acc``: a batched forward pass over those
  sets with the parameters at the end of the epoch (None where the set is not evaluated), the
  averaged parameters when ``config.ema`` is on (as is the saved model).

The loop a caller writes (the search's objective is exactly this)::

    trainer = Trainer.for_dataset(config, dataset)
    for record in trainer.epochs():
        print(record.val_acc)
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_text
from ..config import TrainConfig
from ..data.datasets import Dataset, check_sample_weight, check_training_arrays, load_dataset, validation_split
from ..engine import augment
from ..engine.blas import one_blas_thread, small_gemm_limit, start_blas_threads
from ..engine.layers import input_scale as input_scale_of
from ..engine.parts import column_split
from ..engine.records import Aug, Data, Net, Optim, allocate_work, make_call, make_recipe
from ..engine.step import run_call, useful_threads
from ..errors import ConfigError, DataError, UsageError
from .history import NOTES, BestEpoch, EpochRecord, History, format_epoch, nothing_left
from .model import MLP, check_rows
from .optim import Adam, Schedule
from .runs import (
    CHECKPOINT,
    Checkpoint,
    RunFolder,
    check_resume,
    describe_os_error,
    interrupts_deferred,
    lost_interrupts_kept,
    raise_lost_interrupt,
    read_checkpoint,
    save_checkpoint,
)
from .threads import ThreadChooser, fixed_threads, usable_cores

#: An epoch whose mean training loss exceeds this many times the loss of a uniform guess
#: (ln k for k classes) has diverged even if every number is still finite (eta far too large).
EXPLODED_LOSS_FACTOR = 100.0


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite at ``epoch``, ``step`` (both from 1), or exploded over an epoch."""

    def __init__(self, epoch: int, step: int | None, loss: float, history: History | None = None):
        where = f"epoch {epoch}, step {step}" if step is not None else f"epoch {epoch} (mean over the epoch)"
        super().__init__(f"loss became {loss:.4g} at {where}: training diverged (try a smaller --lr)")
        self.epoch, self.step, self.loss, self.history = epoch, step, loss, history


@dataclass
class TrainResult:
    """A run's history and the model it kept: that of its best epoch (as ``model.npz``)."""

    model: MLP
    history: History


class Progress:
    """One self-rewriting line on a terminal (epoch, fraction, samples/s, loss); quiet elsewhere."""

    def __init__(self, stream=sys.stderr, enabled: bool | None = None):
        self.stream = stream
        self.enabled = stream.isatty() if enabled is None else enabled

    def update(self, epoch: int, epochs: int, done: int, total: int, rate: float, loss: float) -> None:
        if not self.enabled:
            return
        frac = done / total
        bar = "#" * int(24 * frac)
        self.stream.write(f"\repoch {epoch}/{epochs} [{bar:<24}] {100 * frac:5.1f}%  "
                          f"{rate:8.0f} samples/s  loss {loss:.4f} ")
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 79 + "\r")
            self.stream.flush()


def steps_per_call(n_steps: int, calls: int = 20) -> int:
    """Steps handed to one kernel call: about ``calls`` calls an epoch, for the progress line."""
    return max(1, min(n_steps, math.ceil(n_steps / calls)))


@dataclass
class EvalSet:
    """Rows of an image matrix to evaluate after every epoch."""

    images: np.ndarray
    labels: np.ndarray
    rows: np.ndarray


class EpochSampler:
    """One seeded permutation of the training rows per epoch (``rng`` is shared with the initialisation)."""

    def __init__(self, rows: np.ndarray, rng: np.random.Generator):
        self.rows = np.asarray(rows, dtype=np.int64)
        self.rng = rng

    def __len__(self) -> int:
        return len(self.rows)

    def epoch_order(self) -> np.ndarray:
        return self.rows[self.rng.permutation(len(self.rows))]


class Trainer:
    """The state of one training run, and the only caller of :func:`fastmlp.engine.step.run_call`.

    ``images`` uint8 (N, n_0) and ``labels`` (N,) hold the training examples; ``fit_rows`` are
    the rows trained on (all by default). ``eval_sets`` maps ``"val"`` and ``"test"`` to the
    :class:`EvalSet` measured after every epoch. ``config.validate()`` is checked first, then
    the arrays (:func:`check_training_arrays`). The seed draws the weights, then one
    permutation of ``fit_rows`` per epoch.
    """

    def __init__(self, config: TrainConfig, images: np.ndarray, labels: np.ndarray, *, num_classes: int,
                 fit_rows: np.ndarray | None = None, eval_sets: dict[str, EvalSet] | None = None,
                 progress: Progress | None = None, sample_weight: np.ndarray | None = None):
        config.validate()
        check_training_arrays(images, labels, num_classes)
        if sample_weight is not None:
            check_sample_weight(sample_weight, len(images))
        config.check_memory(images.shape[1], num_classes)
        for name, s in (eval_sets or {}).items():
            check_training_arrays(s.images, s.labels, num_classes, what={"val": "validation"}.get(name, name))
            if s.images.shape[1] != images.shape[1]:
                raise DataError(f"{name} images have {s.images.shape[1]} features, training images {images.shape[1]}")
            s.rows = check_rows(s.rows, len(s.images), f"{name} rows", DataError)
        fit_rows = (np.arange(len(images), dtype=np.int64) if fit_rows is None
                    else check_rows(fit_rows, len(images), "fit_rows", DataError))
        if config.batch_size > len(fit_rows):
            raise ConfigError(f"batch_size {config.batch_size} is larger than the training set ({len(fit_rows)} images)")
        self.config = config
        self.images, self.labels = images, labels
        #: each example's weight in the loss (float32), or None: every example counts once
        self.weights = sample_weight
        self.eval_sets = dict(eval_sets or {})
        self.progress = progress or Progress(enabled=False)
        rng = np.random.default_rng(config.seed)
        self.model = MLP.initialized([images.shape[1], *config.hidden_sizes, num_classes], rng)
        #: the split of each step's work (see :mod:`fastmlp.engine.step`): by the shape and the BLAS's kernel
        #: family (whether it has small-matrix kernels), never the thread count
        self.columns = column_split(self.model.sizes, config.batch_size, small_gemm_limit() > 0)
        #: the column split's products in blocks for BLAS's small-matrix kernels where it has them (else 0)
        self.small_gemm = small_gemm_limit() if self.columns else 0
        self.adam = Adam(self.model.num_parameters, config.lr, config.beta1, config.beta2, config.eps,
                         config.weight_decay, config.max_norm, config.ema)
        self.adam.start_average(self.model.params)
        #: the parameters evaluated and saved: the average when config.ema is on, else the model's own
        self.eval_model = MLP(self.model.sizes, self.adam.ema) if config.ema > 0 else self.model
        self.sampler = EpochSampler(fit_rows, rng)
        #: the best epoch so far by the validation accuracy, and when to stop early (config.patience)
        self.best = BestEpoch(config.patience, config.min_delta)
        self.schedule = Schedule(config.schedule, config.lr, config.lr_decay, config.warmup, config.lr_floor,
                                 config.epochs, self.steps_per_epoch)
        self.aug = self._augmentation(images.shape[1])
        self.recipe = make_recipe(self.schedule.code, self.schedule.warmup_steps, self.schedule.total_steps,
                                  config.lr_floor, config.weight_decay, config.max_norm, config.ema,
                                  config.label_smoothing, config.dropout_input, config.dropout)
        fine_gather = self.aug is not None or config.dropout_input > 0
        most = fixed_threads() or min(usable_cores(), 64)
        #: every buffer the kernels use, for batches of batch_size on up to `most` threads
        self.work = allocate_work(self.model.sizes, config.batch_size, most,
                                  augment.scratch_size(self.side) if self.aug is not None else 1,
                                  regression=labels.ndim == 2)
        self.net = Net(self.model.layout, self.model.params)
        self.optim = Optim(self.adam.m, self.adam.v, self.adam.ema)
        self.losses = np.empty(steps_per_call(self.steps_per_epoch), np.float64)
        self.epoch = 0
        #: the thread count of each kernel call: --threads when fixed, else measured (results do not depend on it)
        self.threads = ThreadChooser(min(most, useful_threads(self.work, fine_gather)), fixed_threads())
        start_blas_threads(max(self.threads.counts))
        self.t_start = time.perf_counter()
        self.steps(fit_rows, 0, 0, config.lr)  # zero steps: loads the compiled kernel before timing starts

    def _augmentation(self, n_in: int) -> Aug | None:
        """The warp's and transforms' parameters and taps (:mod:`fastmlp.engine.augment`), or None
        without augmentation."""
        c = self.config
        self.side = int(round(math.sqrt(n_in)))
        if not c.augmented:
            return None
        if self.side * self.side != n_in or self.side < 2:
            raise ConfigError(f"augmentation needs square images; the inputs have {n_in} features")
        warped = c.augment != "none"
        alpha = c.elastic_alpha if c.augment == "elastic" else 0.0
        return Aug(*augment.aug_params(c.aug_rotate if warped else 0.0, c.aug_scale if warped else 0.0,
                                       c.aug_shear if warped else 0.0, c.aug_shift if warped else 0.0, alpha,
                                       c.elastic_sigma, self.side, c.flip, c.crop, c.erase))

    @property
    def train_on(self) -> str:
        """What the training accuracy is measured on: plain, augmented, dropout or augmented+dropout batches."""
        c = self.config
        kinds = [k for k, on in (("augmented", c.augmented),
                                 ("dropout", c.dropout_input > 0 or c.dropout > 0)) if on]
        return "+".join(kinds) or "plain"

    @classmethod
    def for_dataset(cls, config: TrainConfig, dataset: Dataset, *, train_rows: np.ndarray | None = None,
                    evaluate_test: bool = True, progress: Progress | None = None) -> Trainer:
        """A trainer on ``dataset`` minus its validation hold-out (``config.val_size`` rows).

        ``train_rows`` restricts training to those positions among the remaining rows (a subset
        taken after the hold-out). The hold-out is evaluated after every epoch, and the test
        set too when ``evaluate_test``.
        """
        n_train = len(dataset.train_images)
        config.validate(n_train)
        fit_idx, val_idx = validation_split(n_train, config.val_size)
        if train_rows is not None:
            train_rows = np.asarray(train_rows, dtype=np.int64)
            if len(train_rows) and (train_rows.min() < 0 or train_rows.max() >= len(fit_idx)):
                raise ConfigError(f"training subset rows must be in [0, {len(fit_idx) - 1}]")
            fit_idx = fit_idx[train_rows]
        evals = {}
        if len(val_idx):
            evals["val"] = EvalSet(dataset.train_images, dataset.train_labels, val_idx)
        if evaluate_test and len(dataset.test_images):
            evals["test"] = EvalSet(dataset.test_images, dataset.test_labels,
                                    np.arange(len(dataset.test_images), dtype=np.int64))
        return cls(config, dataset.train_images, dataset.train_labels, num_classes=dataset.num_classes,
                   fit_rows=fit_idx, eval_sets=evals, progress=progress)

    # ------------------------------------------------------------------ steps

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.sampler) // self.config.batch_size)

    def steps(self, order: np.ndarray, first: int, n_steps: int, lr: float, epoch: int = 0) -> int:
        """Steps ``first .. first + n_steps - 1`` over mini-batches of ``order``, in one kernel call.

        ``lr`` is the schedule's base for this epoch (:meth:`Schedule.epoch_lr`); ``epoch`` keys
        the augmentation's and dropout's random numbers. Fills ``self.losses[:n_steps]`` with each
        step's mean loss (NaN from the first non-finite one on) and returns the number of examples
        classified correctly.
        """
        if len(self.losses) < n_steps:
            self.losses = np.empty(n_steps, np.float64)
        c, adam = self.config, self.adam
        call = make_call(first, n_steps, c.batch_size, adam.t, c.seed, epoch, lr, adam.beta1, adam.beta2, adam.eps,
                         c.alpha, self.small_gemm)
        threads = self.threads.current
        # The parts are the parallelism; BLAS inside each runs on one thread.
        with one_blas_thread():
            t0 = time.perf_counter()
            correct = run_call(self.columns, threads, self.net, Data(self.images, self.labels, order, self.weights), self.work,
                               self.optim, self.aug, self.recipe, call, self.losses)
            seconds = time.perf_counter() - t0
        B = c.batch_size
        self.threads.record(threads, min(n_steps * B, max(0, len(order) - first * B)), seconds)
        adam.advance(n_steps)
        return correct

    def train_order(self, order: np.ndarray, lr: float, epoch: int = 0) -> tuple[float, int]:
        """Train on every mini-batch of ``order`` in about 20 kernel calls.

        Returns ``(sum of per-example losses, correct)``: the losses added step by step in order,
        so the same bits however the steps were grouped into calls. Raises :class:`TrainingDiverged` at the
        first non-finite loss.
        """
        n, B = len(order), self.config.batch_size
        n_steps = -(-n // B)
        per_call = steps_per_call(n_steps)
        loss_sum, correct, step, t0 = 0.0, 0, 0, time.perf_counter()
        while step < n_steps:
            k = min(self.threads.call_steps(per_call), n_steps - step)
            correct += self.steps(order, step, k, lr, epoch)
            losses = self.losses[:k]
            bad = np.flatnonzero(~np.isfinite(losses))
            if bad.size:
                self.progress.clear()
                raise TrainingDiverged(epoch, step + int(bad[0]) + 1, float(losses[bad[0]]))
            # One step at a time, in step order: the sum's bits must not depend on how the steps
            # were grouped into calls (the thread policy and the load decide that).
            for i, loss in enumerate(losses.tolist()):
                loss_sum += loss * min(B, n - (step + i) * B)
            step += k
            seen = min(step * B, n)
            self.progress.update(epoch, self.config.epochs, seen, n, seen / (time.perf_counter() - t0),
                                 loss_sum / seen)
        return loss_sum, correct

    # ------------------------------------------------------------------ epochs

    def lr_at(self, epoch: int) -> float:
        """Eta of the last step of ``epoch`` (from 1): ``lr * lr_decay ** (epoch - 1)`` for the decay schedule."""
        return self.schedule.at_step(epoch * self.steps_per_epoch - 1, epoch)

    def evaluate(self, name: str, model: MLP | None = None) -> tuple[float, float]:
        """Mean loss and accuracy on the evaluation set ``name`` of ``model`` (default: the current, or
        averaged, parameters), on the thread count training runs on now (results do not depend on it)."""
        s = self.eval_sets[name]
        return (model or self.eval_model).evaluate(s.images, s.labels, s.rows, self.threads.current)

    def run_epoch(self) -> EpochRecord:
        """Train one more epoch, then evaluate (and count it in :attr:`best`); returns its record."""
        epoch = self.epoch + 1
        t_epoch = time.perf_counter()
        order = self.sampler.epoch_order()
        loss_sum, correct = self.train_order(order, self.schedule.epoch_lr(epoch), epoch)
        train_seconds = time.perf_counter() - t_epoch
        n = len(order)
        classes = self.labels.ndim == 1  # a regression's squared error has no uniform guess to compare with
        if classes and loss_sum / n > EXPLODED_LOSS_FACTOR * math.log(self.model.sizes[-1]):
            raise TrainingDiverged(epoch, None, loss_sum / n)
        self.epoch = epoch
        measured = {name: self.evaluate(name) if name in self.eval_sets else (None, None) for name in ("val", "test")}
        self.progress.clear()
        self.best.observe(epoch, measured["val"][1])
        return EpochRecord(epoch=epoch, lr=self.lr_at(epoch), train_loss=loss_sum / n, train_acc=correct / n,
                           val_loss=measured["val"][0], val_acc=measured["val"][1],
                           test_loss=measured["test"][0], test_acc=measured["test"][1],
                           train_seconds=train_seconds, samples_per_s=n / train_seconds,
                           elapsed_s=time.perf_counter() - self.t_start, train_on=self.train_on)

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Everything a resumed run needs, after ``self.epoch`` epochs: ``(arrays, meta)``.

        The parameters, Adam's moments, step count and weight average, and the sampler's
        generator state: a trainer given them by :meth:`restore` continues exactly as this one
        would (the schedule follows from the step count; augmentation and dropout draw from
        counters keyed by the seed, the epoch and the example).
        """
        arrays = {"params": self.model.params, "adam_m": self.adam.m, "adam_v": self.adam.v,
                  "adam_ema": self.adam.ema}
        meta = {"epoch": self.epoch, "adam_t": self.adam.t, "rng": self.sampler.rng.bit_generator.state,
                "config": self.config.to_dict(), "sizes": self.model.sizes}
        return arrays, meta

    def restore(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Continue from a :meth:`state` of a trainer with the same configuration and data (:attr:`best`
        is the caller's to rebuild from the run's records: :meth:`BestEpoch.replay`)."""
        if list(meta.get("sizes", [])) != self.model.sizes:
            raise ConfigError(f"the checkpoint's layer sizes {meta.get('sizes')} differ from {self.model.sizes}")
        for name, buf in (("params", self.model.params), ("adam_m", self.adam.m), ("adam_v", self.adam.v),
                          ("adam_ema", self.adam.ema)):
            src = arrays.get(name)
            if src is None or src.shape != buf.shape or src.dtype != buf.dtype:
                raise ConfigError(f"the checkpoint's {name} does not fit the model")
            buf[...] = src
        self.adam.t = int(meta["adam_t"])
        self.epoch = int(meta["epoch"])
        self.sampler.rng.bit_generator.state = meta["rng"]

    def epochs(self) -> Iterator[EpochRecord]:
        """Run the remaining epochs up to ``config.epochs``, yielding each record as it ends; with
        ``config.patience``, stop early once :attr:`best` says so."""
        while self.epoch < self.config.epochs and not self.best.stop:
            yield self.run_epoch()


def train(config: TrainConfig, dataset: Dataset | Callable[[], Dataset] | None = None, *, data_dir=None,
          verify: bool = True, out_dir=None, resume: bool = False, progress: Progress | None = None,
          log: Callable[[str], None] | None = None, train_rows: np.ndarray | None = None,
          evaluate_test: bool = True) -> TrainResult:
    """Train an MLP on ``dataset`` with ``config``: a :class:`Trainer`, its epochs, and the files.

    When ``dataset`` is None, ``config.dataset`` is loaded from ``data_dir`` (downloaded on
    first use); when it is a callable (e.g. :class:`fastmlp.data.datasets.BackgroundLoad`), it is
    called for the dataset. Either way train() then owns the arrays and frees them before the
    final plot, which keeps the peak memory down.

    The run keeps the model of its best epoch (:class:`~fastmlp.training.history.BestEpoch`: the highest
    validation accuracy; the last epoch without a validation hold-out), stops early with
    ``config.patience``, and measures the kept model on the test set once, at the end.

    ``train_rows`` restricts training to a subset of the training rows (after the validation
    split). With ``out_dir`` (see :mod:`fastmlp.training.runs`): the folder is checked and locked for the
    run's life before anything else, and cleared of a previous run's files only once the settings,
    the data (and the checkpoint) are checked; after every epoch ``checkpoint.npz``, ``history.json``,
    ``metrics.csv`` and ``model.npz`` (the best epoch's; ``last.npz``, the last epoch's, while
    it differs) are written, and ``curves.png`` at the end, each atomically. ``resume``
    continues the run in ``out_dir`` from its checkpoint, number for number as if it had never
    stopped (``config`` must be the run's own but for :data:`~fastmlp.config.STOPPING`). Raises
    :class:`TrainingDiverged` when the loss stops being finite, after saving the history so far, and
    :class:`RunInterrupted` on Ctrl-C (a KeyboardInterrupt saying what the folder holds).
    """
    config.validate()
    out = Path(out_dir) if out_dir is not None else None
    if resume and out is None:
        raise UsageError("resuming needs the run's folder")
    folder = RunFolder(out, resume=resume) if out is not None else None
    try:
        with folder or contextlib.nullcontext(), lost_interrupts_kept():
            return _train(config, dataset, folder, data_dir=data_dir, verify=verify, progress=progress, log=log,
                          train_rows=train_rows, evaluate_test=evaluate_test)
    except KeyboardInterrupt:
        if folder is None:
            raise
        raise RunInterrupted(folder.saved, folder.begun) from None


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`train` with a run folder: ``saved`` is the last epoch whose files the folder
    holds (0: none), ``begun`` whether the run had started writing them (a new run: replaced the previous
    run's files; before that the folder is as it was)."""

    def __init__(self, saved: int, begun: bool):
        super().__init__()
        self.saved, self.begun = saved, begun


def _train(config: TrainConfig, dataset, folder: RunFolder | None, *, data_dir, verify: bool, progress, log,
           train_rows, evaluate_test: bool) -> TrainResult:
    """:func:`train` in its run folder, claimed: the checkpoint, the data and the settings are checked
    against each other before the folder's files are touched."""
    out = folder.path if folder is not None else None
    checkpoint = read_checkpoint(out) if folder is not None and folder.resume else None
    owns_dataset = not isinstance(dataset, Dataset)
    if owns_dataset:
        dataset = dataset() if dataset is not None else load_dataset(config.dataset, data_dir, verify=verify,
                                                                     download=True)
        if log is not None:
            log(f"data: {dataset.name} from {dataset.source} ({len(dataset.train_images)} train, "
                f"{len(dataset.test_images)} test images{'' if verify else ', unverified'})")
    trainer = Trainer.for_dataset(config, dataset, train_rows=train_rows, evaluate_test=evaluate_test,
                                  progress=progress)
    raise_lost_interrupt()  # a Ctrl-C while the kernels loaded
    val_rows = len(trainer.eval_sets["val"].rows) if "val" in trainer.eval_sets else 0
    history = History(config=config.to_dict(), dataset={"name": dataset.name, "source": str(dataset.source),
                                                        "checksums": dataset.checksums,
                                                        "train_rows": len(trainer.sampler),
                                                        "val_rows": val_rows}, notes=list(NOTES))
    files = RunFiles(folder, trainer, history, float(input_scale_of(trainer.images)))
    if checkpoint is not None:
        _resume(trainer, history, files.best, checkpoint, out)
        folder.saved = trainer.epoch
        if log is not None:
            log(f"resuming {out} after epoch {trainer.epoch}")
    try:
        if folder is not None:
            removed = folder.begin()
            if removed and log is not None:
                log(f"replacing the previous run in {out} ({', '.join(removed)})")
        if checkpoint is not None:
            files.resumed()
        if log is not None:
            log(f"training: {len(trainer.sampler)} images an epoch, {trainer.steps_per_epoch} steps of "
                f"{config.batch_size}")
        for record in trainer.epochs():
            history.epochs.append(record.as_dict())
            files.epoch_done()
            if log is not None:
                log(format_epoch(history.epochs[-1]))
            raise_lost_interrupt()  # a Ctrl-C while the evaluation's kernels loaded
    except TrainingDiverged as err:
        err.history = history
        files.finish("diverged", str(err))
        raise
    except (KeyboardInterrupt, BrokenPipeError) as exc:  # Ctrl-C, or the reader of the log went away
        trainer.progress.clear()
        files.finish("interrupted", "interrupted by the user" if isinstance(exc, KeyboardInterrupt) else
                     "the output's reader went away")
        raise
    if "test" in trainer.eval_sets:  # once, on the kept model: the test set chooses nothing
        history.test_loss, history.test_acc = trainer.evaluate("test", files.best)
    stopped = trainer.epoch < config.epochs
    if stopped and log is not None:
        log(f"stopped early after epoch {trainer.epoch}: {trainer.best.reason()}")
    status, reason = ("stopped early", trainer.best.reason()) if stopped else ("completed", "")
    if out is not None:  # the curves before the status: a run killed before them has not ended, and resumes
        if owns_dataset:  # free ~55 MB of images before matplotlib loads
            del dataset, trainer
        from .curves import plot_curves
        plot_curves(history, out / "curves.png")
    files.finish(status, reason)
    return TrainResult(files.best, history)


class RunFiles:
    """The files of a run in ``out`` (none when ``out`` is None), and the model of its best epoch.

    After every epoch: ``checkpoint.npz`` (with the best epoch's parameters while they differ
    from the last), ``history.json``, ``metrics.csv``, then ``model.npz`` when the epoch is the
    best so far (and ``last.npz`` is removed), else ``last.npz``. A write that fails is one
    :class:`UsageError` line; the files of the last complete epoch stay whole.
    """

    def __init__(self, folder: RunFolder | None, trainer: Trainer, history: History, input_scale: float):
        self.folder, self.trainer, self.history, self.input_scale = folder, trainer, history, input_scale
        self.out = folder.path if folder is not None else None
        #: the parameters of the best epoch (a copy of the evaluated ones, taken when it ended)
        self.best = MLP(trainer.eval_model.sizes, trainer.eval_model.params.copy())

    def epoch_done(self) -> None:
        """Keep the epoch's parameters if it is the best so far, then write every file."""
        trainer = self.trainer
        is_best = trainer.best.epoch == trainer.epoch
        if is_best:
            self.best.params[...] = trainer.eval_model.params
        self.history.best_epoch = trainer.best.epoch
        self.history.status = "running"
        if self.out is None:
            return
        with interrupts_deferred(), self._writing():  # Ctrl-C waits until the epoch's files are all written
            arrays, meta = trainer.state()
            if not is_best:
                arrays["best_params"] = self.best.params
            save_checkpoint(self.out / CHECKPOINT, arrays, {**meta, "history": asdict(self.history)})
            write_text(self.out / "history.json", self.history.to_json())
            write_text(self.out / "metrics.csv", self.history.metrics_csv())
            if is_best:
                self._save_model(self.best, "model.npz")
                (self.out / "last.npz").unlink(missing_ok=True)
            else:
                self._save_model(trainer.eval_model, "last.npz")
            self.folder.saved = trainer.epoch

    def resumed(self) -> None:
        """The model files as the checkpoint has them (a run killed between the two left older ones)."""
        if self.out is not None and self.history.best_epoch is not None:
            with interrupts_deferred(), self._writing():
                self._save_model(self.best, "model.npz", self.history.best_epoch)
                if self.trainer.epoch != self.history.best_epoch:
                    self._save_model(self.trainer.eval_model, "last.npz")
                else:
                    (self.out / "last.npz").unlink(missing_ok=True)

    def finish(self, status: str, message: str = "") -> None:
        """Write ``history.json`` with how the run ended."""
        self.history.status, self.history.message = status, message
        if self.out is not None:
            with self._writing():
                write_text(self.out / "history.json", self.history.to_json())

    def _save_model(self, model: MLP, name: str, epoch: int | None = None) -> None:
        """``model`` as ``name`` (of ``epoch``, the current one by default), saying why it was kept."""
        trainer, config = self.trainer, self.trainer.config
        chosen = "best validation accuracy" if name == "model.npz" and "val" in trainer.eval_sets else "last epoch"
        epoch = trainer.epoch if epoch is None else epoch
        model.save(self.out / name, config=config.to_dict(), dataset=self.history.dataset, epoch=epoch,
                   chosen=chosen, weights="ema" if config.ema > 0 else "last", input_scale=self.input_scale)

    @contextlib.contextmanager
    def _writing(self):
        try:
            yield
        except OSError as exc:
            raise UsageError(f"{self.out}: cannot write the run's files ({describe_os_error(exc)}); the last "
                             f"complete epoch's files are intact") from None


def _resume(trainer: Trainer, history: History, best: MLP, checkpoint: Checkpoint, out: Path) -> None:
    """Put the checkpoint's state into ``trainer``, ``best`` and ``history``, after checking they belong and
    that the run has epochs left to train."""
    config = trainer.config
    check_resume(checkpoint, config, history.dataset["checksums"], out)
    trainer.restore(checkpoint.arrays, checkpoint.meta)
    if trainer.adam.t != trainer.epoch * trainer.steps_per_epoch:
        raise UsageError(f"{out / CHECKPOINT}: the checkpoint is damaged: its step count {trainer.adam.t} is not "
                         f"{trainer.epoch} epochs of {trainer.steps_per_epoch} steps")
    history.epochs = list(checkpoint.records)
    trainer.best = BestEpoch.replay(config.patience, config.min_delta, history.epochs)
    history.best_epoch = trainer.best.epoch or None
    kept = checkpoint.arrays.get("best_params", trainer.eval_model.params)
    if kept.shape != best.params.shape or kept.dtype != best.params.dtype:
        raise UsageError(f"{out}: the checkpoint's best_params do not fit the model")
    best.params[...] = kept
    refusal = nothing_left(out, config, history.epochs)
    if refusal is not None:
        raise UsageError(refusal)
