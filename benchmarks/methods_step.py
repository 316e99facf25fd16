"""Cost of a training step with each registered method, as a ratio to the floor and to joint training.

The step is the trainer's ``recon.train.step.GradientStep`` on the Multi-Fashion
ResNet-18 (tasks T1 and T2, 10 classes each; 11.2M shared parameters) with random
one-channel 36 × 36 images. Variants:

- floor: one forward pass and T backward passes into the Jacobian J
  (``forward_losses`` then ``jacobian``), with no method and no ``.grad`` update.
  This is the least that exact per-task gradients cost.
- joint: the trainer's joint step, a single backward pass of the summed loss.
- joint + record: joint training that builds J and records the layer cosines
  (``recon.conflict.ConflictRecorder``), as a Recon search run does.
- every registered method: the full step (J, the method, ``.grad`` written).

All variants run in one process, one after another within each round, so that a
shared machine's load falls on all of them alike. The first round is a warm-up,
and each time is the median over the remaining rounds. On the CPU the table also
gives the ratio of this process's CPU time (``time.process_time``, all threads),
which other processes on the machine disturb less than the wall time.

Peak memory is the peak above the memory in use just before the step, measured
in one more round after the timed ones. On CUDA it is read from
``torch.cuda.max_memory_allocated``. On the CPU, a thread samples the resident set
size every millisecond (Linux ``/proc/self/statm``), so a peak shorter than that
can be missed. For that round, ``mallopt`` sets glibc to serve every
allocation above 128 KiB with its own mapping, so freed tensors leave the
resident set at once instead of staying in the heap for reuse.

Usage: python benchmarks/methods_step.py [--batch-size 256] [--device cuda|cpu] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import statistics
import threading
import time
from collections.abc import Callable

import torch

from recon import methods
from recon.models.resnet import MultiTaskResNet18
from recon.tasks import ClassificationTask
from recon.train.step import GradientStep

try:
    from recon.conflict import ConflictRecorder
except ImportError:  # the recorder is optional; without it the "joint + record" row is left out
    ConflictRecorder = None


class PeakMemory:
    """Peak memory above the level at entry, in bytes, while the ``with`` block runs."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            self._start = _resident_bytes()
            self._highest = self._start
            self._running = True
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._start
        else:
            self._running = False
            self._thread.join()
            self.peak = self._highest - self._start

    def _sample(self) -> None:
        while self._running:
            self._highest = max(self._highest, _resident_bytes())
            time.sleep(0.001)


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def seconds(function: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """Return the wall time and this process's CPU time of one call of ``function``, after the device finishes."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, time.process_time() - start_cpu


def build_variants(model, tasks, images, targets, device, repeats) -> dict[str, Callable[[], object]]:
    """Return each variant's step as a function of no arguments."""
    generator = torch.Generator(device=device).manual_seed(1)
    floor_step = GradientStep(model, tasks, methods.build("joint"))

    def floor():
        model.zero_grad(set_to_none=True)
        losses = floor_step.forward_losses(images, targets)
        floor_step.jacobian(losses)

    variants = {"floor": floor, "joint": _step(GradientStep(model, tasks, methods.build("joint")), images, targets)}
    if ConflictRecorder is not None:
        # One record per round: the warm-up, the timed rounds and the memory round.
        recorder = ConflictRecorder.for_model(model, capacity=repeats + 2, device=device)
        recording = GradientStep(model, tasks, methods.build("joint"), recorder)
        variants["joint + record"] = _step(recording, images, targets)
    for name in methods.REGISTRY:
        if name != "joint":
            method = methods.build(name, generator=generator)
            variants[name] = _step(GradientStep(model, tasks, method), images, targets)
    return variants


def _step(step: GradientStep, images, targets) -> Callable[[], object]:
    return lambda: step(images, targets)


def median_times(variants: dict[str, Callable[[], object]], device: torch.device,
                 repeats: int) -> dict[str, tuple[float, float]]:
    """Return each variant's median wall and CPU time (s) over ``repeats`` rounds after a warm-up round."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for round_index in range(repeats + 1):
        for name, function in variants.items():
            elapsed = seconds(function, device)
            if round_index > 0:
                times[name].append(elapsed)
    return {name: (statistics.median(wall for wall, _ in values), statistics.median(cpu for _, cpu in values))
            for name, values in times.items()}


def peak_memory(variants: dict[str, Callable[[], object]], device: torch.device) -> dict[str, int | None]:
    """Return each variant's peak memory (bytes) above the level before its step; None where unmeasurable."""
    if device.type != "cuda" and not _map_large_allocations():
        return {name: None for name in variants}
    peaks = {}
    for name, function in variants.items():
        with PeakMemory(device) as memory:
            function()
        peaks[name] = memory.peak
    return peaks


def _map_large_allocations() -> bool:
    """Make glibc map every allocation above 128 KiB on its own; return False where that is unavailable."""
    if not os.path.exists("/proc/self/statm"):
        return False
    library = ctypes.util.find_library("c")
    if library is None:
        return False
    mallopt = ctypes.CDLL(library).mallopt
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h> constants
    return bool(mallopt(m_mmap_threshold, 128 * 1024)) and bool(mallopt(m_trim_threshold, 128 * 1024))


def markdown_table(medians: dict[str, tuple[float, float]], peaks: dict[str, int | None], cpu_column: bool) -> str:
    """Return the results as a Markdown table; ``cpu_column`` adds the CPU-time ratio to the floor."""
    (floor, floor_cpu), (joint, _) = medians["floor"], medians["joint"]
    header = "| variant | step (ms) | / floor | / joint |" + (" CPU time / floor |" if cpu_column else "")
    lines = [header + " peak memory (MiB) |", "|---|---:|---:|---:|" + ("---:|" if cpu_column else "") + "---:|"]
    for name, (wall, cpu) in medians.items():
        row = f"| {name} | {wall * 1e3:.1f} | {wall / floor:.3f} | {wall / joint:.3f} |"
        if cpu_column:
            row += f" {cpu / floor_cpu:.3f} |"
        memory = "n/a" if peaks[name] is None else f"{peaks[name] / 2**20:.0f}"
        lines.append(f"{row} {memory} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256, help="images per step (default: 256)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="device to run on (default: cuda when available, else cpu)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds after the warm-up round (default: 5)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice). On a machine shared with other "
                             "busy processes, 1 avoids threads waiting for each other at every parallel operation")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1; found {args.repeats}")
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    tasks = {name: ClassificationTask(name, 10) for name in ("T1", "T2")}
    model = MultiTaskResNet18({name: 10 for name in tasks}).to(device)
    images = torch.randn(args.batch_size, 1, 36, 36, device=device)
    targets = {name: torch.randint(0, 10, (args.batch_size,), device=device) for name in tasks}

    variants = build_variants(model, tasks, images, targets, device, args.repeats)
    medians = median_times(variants, device, args.repeats)
    peaks = peak_memory(variants, device)

    shared = sum(p.numel() for p in model.shared_parameters())
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; batch {args.batch_size}, "
          f"{len(tasks)} tasks, {shared} shared parameters; median of {args.repeats} rounds after one warm-up")
    print(markdown_table(medians, peaks, cpu_column=device.type == "cpu"))


if __name__ == "__main__":
    main()
