"""The trainer: run -> epoch -> step, evaluation, metrics, checkpoints and the summary."""

from __future__ import annotations

import itertools
import json
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from recon import methods
from recon.data import DataBundle, TensorSplit, build_data
from recon.delta_m import delta_m
from recon.models.base import MultiTaskModel
from recon.tasks import Task
from recon.train.checkpoint import (
    CHECKPOINT_FORMAT, CheckpointError, checkpoint_path, load_model_weights, model_shapes, save_checkpoint,
)
from recon.train.interrupt import StopSignals, TrainingInterrupted
from recon.train.random_state import capture_random_state, restore_random_state
from recon.train.rundir import write_json, write_run_files
from recon.train.step import GradientStep
from recon.train.wandb_logger import WandbLogger

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """Return the device that ``train.device`` names (``auto``: CUDA when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device is '{name}' but CUDA is not available here; use train.device=cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ValueError(f"train.device '{name}' is not a device; use auto, cpu, cuda or cuda:N") from None


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Return the generator of one epoch's data order: it depends only on the seed and the epoch."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def build_optimizer(model: torch.nn.Module, train: dict) -> torch.optim.Optimizer:
    if train["optimizer"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=train["lr"], momentum=train["momentum"],
                               weight_decay=train["weight_decay"])
    return torch.optim.Adam(model.parameters(), lr=train["lr"], weight_decay=train["weight_decay"])


def build_scheduler(optimizer: torch.optim.Optimizer, train: dict) -> torch.optim.lr_scheduler.MultiStepLR:
    """Multiply the learning rate by ``gamma`` at each milestone epoch (stepped once per epoch)."""
    milestones = train["milestones"]
    if not all(isinstance(m, int) and m > 0 for m in milestones):
        raise ValueError(f"train.milestones must be a list of positive epoch numbers; found {milestones!r}")
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=train["gamma"])


def _scalars(values: dict) -> dict[str, float]:
    """Convert diagnostics (floats or device tensors) into loggable floats, one per entry."""
    result = {}
    for key, value in values.items():
        if isinstance(value, torch.Tensor):
            flat = value.detach().float().reshape(-1).tolist()
            if len(flat) == 1:
                result[key] = flat[0]
            else:
                result.update({f"{key}/{i}": v for i, v in enumerate(flat)})
        else:
            result[key] = float(value)
    return result


@torch.no_grad()
def evaluate(model: MultiTaskModel, split, tasks: dict[str, Task], batch_size: int,
             device: torch.device) -> dict[str, dict[str, float]]:
    """Return each task's metrics over ``split``; the model is left in eval mode."""
    model.eval()
    metrics = {task: spec.new_metric() for task, spec in tasks.items()}
    for images, targets in split.batches(batch_size, device=device):
        outputs = model(images)
        for task, metric in metrics.items():
            metric.update(outputs[task], targets[task])
    return {task: metric.compute() for task, metric in metrics.items()}


def _check_intervals(train: dict) -> None:
    """Reject intervals of zero or fewer epochs or steps, which would divide by zero in the loop."""
    for key in ("eval_every", "checkpoint_every", "log_every"):
        if train[key] < 1:
            raise ValueError(f"train.{key} must be a positive integer; found {train[key]}")


class Trainer:
    """Trains one run from a resolved config into ``run_dir``.

    ``fit`` checkpoints every ``train.checkpoint_every`` epochs and at the end.
    On SIGINT or SIGTERM it finishes the current step, writes a checkpoint that
    records the position within the epoch, and raises ``TrainingInterrupted``.
    ``restore`` loads such a checkpoint into a new trainer, after which ``fit``
    continues the run exactly where it stopped (see ``recon.train.resume``).
    """

    def __init__(self, config: dict, run_dir: Path) -> None:
        from recon.build import build_model_from_config

        self.config = config
        self.run_dir = run_dir
        self.train_config = config["train"]
        _check_intervals(self.train_config)
        self.device = resolve_device(self.train_config["device"])
        seed_everything(config["seed"])

        self.data = self._load_data()
        self.model, self.branched = build_model_from_config(config)
        self.model.to(self.device)
        self.tasks = {task: self.data.tasks[task] for task in self.model.tasks}
        self.optimizer = build_optimizer(self.model, self.train_config)
        self.scheduler = build_scheduler(self.optimizer, self.train_config)

        method_options = {k: v for k, v in config["method"].items() if k != "name"}
        self.method_generator = torch.Generator(device=self.device).manual_seed(config["seed"] + 1)
        self.method = methods.build(config["method"]["name"], generator=self.method_generator, **method_options)
        self.steps_per_epoch = self.data.train.num_batches(self.train_config["batch_size"],
                                                           drop_last=self.train_config["drop_last"])
        self.recorder = self._build_recorder()
        self.step = GradientStep(self.model, self.tasks, self.method, self.recorder)

        # Position in training: completed epochs, then steps and summed task losses within the current epoch.
        self.epoch = 0
        self.epoch_step = 0
        self.epoch_losses = np.zeros(len(self.tasks))
        self.resumed = False
        self.wandb_run_id: str | None = None
        self.wandb: WandbLogger | None = None
        self.stop = StopSignals()
        self.test_metrics: dict | None = None

    def _load_data(self) -> DataBundle:
        data = build_data(self.config["data"])
        if self.device.type == "cuda" and isinstance(data.train, TensorSplit):
            # Small image datasets live on the GPU: batches are gathered there, with no copies from the host.
            data.train = data.train.to(self.device)
            data.test = data.test.to(self.device)
        logger.info("data %s: %d training and %d test samples", data.name, len(data.train), len(data.test))
        return data

    def _build_recorder(self):
        if not self.config["recon"]["record"]:
            return None
        from recon.conflict.recorder import ConflictRecorder

        capacity = self.steps_per_epoch * self.train_config["epochs"]
        return ConflictRecorder.for_model(self.model, capacity=capacity, device=self.device)

    @property
    def global_step(self) -> int:
        return self.step.step

    def fit(self) -> dict:
        """Train every remaining epoch, evaluate, checkpoint, and write ``summary.json``.

        Raises ``TrainingInterrupted`` after writing a checkpoint when SIGINT or
        SIGTERM arrives. No ``summary.json`` is written in that case.
        """
        if not self.resumed:
            write_run_files(self.run_dir, self.config, self.device)
        self.wandb = WandbLogger(self.config, self.run_dir, run_id=self.wandb_run_id)
        self._log_setup()
        try:
            with self.stop:
                self._train_epochs()
            summary = self.write_summary()
        finally:
            self.wandb.finish()
        return summary

    def _train_epochs(self) -> None:
        epochs = self.train_config["epochs"]
        while self.epoch < epochs:
            if not self.train_epoch():
                self._stop_with_checkpoint(saved=False)
            self.epoch += 1
            last = self.epoch == epochs
            if last or self.epoch % self.train_config["eval_every"] == 0:
                self.test_metrics = self.evaluate_test()
            saved = last or self.epoch % self.train_config["checkpoint_every"] == 0
            if saved:
                self.save_checkpoint()
            # After the last epoch only the summary is left to write, so the run finishes instead.
            if self.stop.received is not None and not last:
                self._stop_with_checkpoint(saved)

    def _stop_with_checkpoint(self, saved: bool) -> None:
        if not saved:
            self.save_checkpoint()
        raise TrainingInterrupted(self.stop.received, self.run_dir, self.epoch, self.epoch_step, self.global_step)

    def _log_setup(self) -> None:
        shared = sum(p.numel() for p in self.model.shared_parameters())
        total = sum(p.numel() for p in self.model.parameters())
        logger.info("model %s: %d parameters (%.2f MB), %d shared; branched layers: %s",
                    self.config["model"]["name"], total, total * 4 / 2**20, shared,
                    ", ".join(self.branched) or "none")
        logger.info("method %s, %d epochs of %d steps, device %s, run directory %s",
                    self.config["method"]["name"], self.train_config["epochs"], self.steps_per_epoch,
                    self.device, self.run_dir)
        if self.resumed:
            logger.info("resuming at epoch %d, step %d (%d steps into the epoch)",
                        self.epoch + 1, self.global_step, self.epoch_step)

    def train_epoch(self) -> bool:
        """Run the epoch's remaining training steps; return False if a stop signal ended it early.

        The data order depends only on the seed and the epoch, so an epoch
        resumed after ``epoch_step`` steps draws the same order and skips the
        batches already trained on. Those batches are still gathered (or, for
        a dataset read through a DataLoader, loaded) and dropped.
        """
        self.model.train()
        config = self.train_config
        generator = epoch_generator(self.config["seed"], self.epoch)
        batches = self.data.train.batches(config["batch_size"], shuffle=True, generator=generator,
                                          device=self.device, drop_last=config["drop_last"])
        batches = itertools.islice(batches, self.epoch_step, None)
        started, first_step = time.perf_counter(), self.epoch_step
        bar = tqdm(total=self.steps_per_epoch, initial=self.epoch_step, leave=False, dynamic_ncols=True,
                   desc=f"epoch {self.epoch + 1}/{config['epochs']}")
        for images, targets in self._until_stopped(batches):
            losses = self.step(images, targets)
            self.optimizer.step()
            self.epoch_losses += losses
            self.epoch_step += 1
            bar.update()
            if self.epoch_step % config["log_every"] == 0 or self.epoch_step == self.steps_per_epoch:
                means = self.epoch_losses / self.epoch_step
                bar.set_postfix({task: f"{value:.3f}" for task, value in zip(self.tasks, means)})
                self._log_train(losses, (self.epoch_step - first_step) / (time.perf_counter() - started))
            if self.stop.received is not None:
                bar.close()
                return False
        bar.close()

        self.scheduler.step()
        means = self.epoch_losses / max(self.epoch_step, 1)
        logger.info("epoch %d/%d done: mean loss %s", self.epoch + 1, config["epochs"],
                    ", ".join(f"{task} {value:.4f}" for task, value in zip(self.tasks, means)))
        self.epoch_step = 0
        self.epoch_losses = np.zeros(len(self.tasks))
        return True

    def _until_stopped(self, batches):
        """Yield the batches; end quietly if loading one fails after a stop signal.

        Ctrl-C in a terminal reaches DataLoader worker processes too, which then
        exit, so fetching the next batch fails. The step before it is complete,
        so the checkpoint can still be written.
        """
        iterator = iter(batches)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except Exception as error:
                if self.stop.received is None:
                    raise
                logger.warning("loading the next batch failed after the stop signal (%s: %s); "
                               "checkpointing the last completed step", type(error).__name__, error)
                return
            yield batch

    def _log_train(self, losses: list[float], steps_per_second: float) -> None:
        metrics = {f"train/{task}/loss": value for task, value in zip(self.tasks, losses)}
        metrics["train/lr"] = self.optimizer.param_groups[0]["lr"]
        metrics["train/steps_per_second"] = steps_per_second
        diagnostics = _scalars(self.method.diagnostics)
        metrics.update({f"method/{k}": v for k, v in diagnostics.items()})
        self._append_metrics(metrics)
        logger.info("epoch %d step %d/%d | loss %s | lr %.3g | %.2f steps/s%s", self.epoch + 1, self.epoch_step,
                    self.steps_per_epoch, " ".join(f"{task} {value:.4f}" for task, value in zip(self.tasks, losses)),
                    metrics["train/lr"], steps_per_second,
                    " | " + " ".join(f"{k} {v:.4g}" for k, v in diagnostics.items()) if diagnostics else "")

    def _append_metrics(self, metrics: dict) -> None:
        record = {"step": self.global_step, "epoch": self.epoch + 1, **metrics}
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        self.wandb.log(metrics, step=self.global_step)

    def evaluate_test(self) -> dict[str, dict[str, float]]:
        """Evaluate on the test split, log the metrics and return them."""
        metrics = evaluate(self.model, self.data.test, self.tasks, self.train_config["eval_batch_size"],
                           self.device)
        flat = {f"test/{task}/{name}": value for task, values in metrics.items() for name, value in values.items()}
        delta = self.delta_m(metrics)
        if delta is not None:
            flat["test/delta_m"] = delta
        self._append_metrics(flat)
        logger.info("epoch %d test: %s", self.epoch,
                    "; ".join(f"{task} " + ", ".join(f"{k} {v:.4f}" for k, v in values.items())
                              for task, values in metrics.items()))
        return metrics

    def delta_m(self, metrics: dict[str, dict[str, float]]) -> float | None:
        """Return Δm% against ``eval.reference`` (None when no reference is configured)."""
        reference = self.config["eval"]["reference"]
        if reference is None:
            return None
        higher_is_better = {task: self.tasks[task].new_metric().higher_is_better for task in metrics}
        return delta_m(metrics, reference, higher_is_better)

    def checkpoint_state(self) -> dict:
        """Return everything needed to continue this run exactly, as checkpoint-safe values."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config,
            "model_shapes": model_shapes(self.model),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "epoch_losses": self.epoch_losses.tolist(),
            "step": self.global_step,
            "random": capture_random_state(),
            "method_generator": self.method_generator.get_state(),
            "method": self.method.state_dict(),
            "recorder": self.recorder.state_dict() if self.recorder is not None else None,
            "test_metrics": self.test_metrics,
            "wandb_run_id": self.wandb.run_id if self.wandb is not None else self.wandb_run_id,
            "device_type": self.device.type,
        }

    def save_checkpoint(self) -> None:
        path = checkpoint_path(self.run_dir)
        save_checkpoint(path, self.checkpoint_state())
        logger.info("checkpoint after %d epochs and %d more steps (step %d): %s", self.epoch, self.epoch_step,
                    self.global_step, path)

    def restore(self, state: dict, path: Path) -> None:
        """Load a checkpoint's state (checked by ``check_resumable``) so that ``fit`` continues the run.

        Raises ``CheckpointError`` naming ``path`` when the checkpoint's model
        differs from this trainer's or it was written on another device type.
        """
        if state["device_type"] != self.device.type:
            raise CheckpointError(
                f"checkpoint {path} was written on {state['device_type']} but this run would continue on "
                f"{self.device.type}; the random generator states are specific to a device type, so resume with "
                f"train.device={state['device_type']}"
            )
        load_model_weights(self.model, state, path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.recorder is not None and state["recorder"] is not None:
            self.recorder.load_state_dict(state["recorder"])

        # Random state last, because building the trainer above has drawn from the global generators.
        restore_random_state(state["random"])
        self.method_generator.set_state(state["method_generator"])
        self.method.load_state_dict(state["method"])

        self.epoch = state["epoch"]
        self.epoch_step = state["epoch_step"]
        self.epoch_losses = np.array(state["epoch_losses"], dtype=np.float64)
        self.step.step = state["step"]
        self.test_metrics = state["test_metrics"]
        self.wandb_run_id = state["wandb_run_id"]
        self.resumed = True

    def write_summary(self) -> dict:
        """Write ``summary.json``: the final test metrics, sizes and the run's length."""
        total = sum(p.numel() for p in self.model.parameters())
        summary = {
            "test": self.test_metrics,
            "epochs": self.epoch,
            "steps": self.global_step,
            "params": total,
            "size_mb": total * 4 / 2**20,
            "branched": self.branched,
        }
        delta = self.delta_m(self.test_metrics)
        if delta is not None:
            summary["delta_m"] = delta
        if self.recorder is not None:
            self.recorder.save(self.run_dir, settings={
                "method": self.config["method"], "seed": self.config["seed"], "data": self.config["data"]["name"],
                "model": self.config["model"]["name"], "epochs": self.epoch, "batch_size": self.train_config["batch_size"],
            })
        write_json(self.run_dir / "summary.json", summary)
        self.wandb.summary({f"test/{task}/{name}": value for task, values in self.test_metrics.items()
                            for name, value in values.items()})
        return summary
