"""Cost of recording layer-wise gradient cosines, as a ratio to the training step it belongs to.

The step is ``recon.train.step.GradientStep`` on the multi-digit ResNet-18 (two
tasks, 41 shared layers, 11.2M shared parameters): one forward pass and one
backward pass per task to build the Jacobian J, then the method (here the sum of
J's rows). ``ConflictRecorder.record`` is timed on that step's J. Both are timed in
the same process, so the ratio holds on the machine it ran on.

With ``--compare``, other ways of computing the per-layer dot products are timed on
the same J: segment sums (``torch.segment_reduce``), ``index_add_`` over a column ->
layer index, and a Python loop of one matrix product per layer.

Usage: python benchmarks/record_overhead.py [--batch-size 256] [--device auto] [--repeats 5] [--compare]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from recon.conflict import ConflictRecorder, shared_layers
from recon.data import dataset_tasks
from recon.methods.base import Method
from recon.models.resnet import MultiTaskResNet18
from recon.train.step import GradientStep


class RowSum(Method):
    """Joint training's direction, computed from J so that the step builds J as a search run does."""

    needs_jacobian = True

    def __call__(self, J: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        return J.sum(0)


def seconds(function: Callable[[], object], device: torch.device) -> float:
    """Return the wall time of one call of ``function``, waiting for the device to finish."""
    start = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def median_seconds(function: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Return the median wall time of ``function`` over ``repeats`` runs after one warm-up run."""
    seconds(function, device)
    return statistics.median(seconds(function, device) for _ in range(repeats))


def alternatives(J: torch.Tensor, recorder: ConflictRecorder) -> dict[str, Callable[[], object]]:
    """Other ways of computing the per-layer products ``J_i · J_j`` (i ≤ j), for comparison."""
    layers = recorder.layers
    first, second = torch.triu_indices(J.shape[0], J.shape[0], device=J.device)
    lengths = torch.tensor([layer.params for layer in layers], device=J.device)
    column_layer = torch.repeat_interleave(torch.arange(len(layers), device=J.device), lengths)

    def segment_sums():
        products = J[first] * J[second]
        return torch.segment_reduce(products, "sum", lengths=lengths.expand(len(first), -1).contiguous(), axis=1)

    def index_add():
        products = J[first] * J[second]
        return torch.zeros(len(first), len(layers), device=J.device).index_add_(1, column_layer, products)

    def loop_over_layers():
        return [J[:, layer.start:layer.stop] @ J[:, layer.start:layer.stop].T for layer in layers]

    return {"segment_reduce": segment_sums, "index_add_": index_add, "loop over layers (matmul)": loop_over_layers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256, help="images per step (default: 256)")
    parser.add_argument("--image-size", type=int, default=36, help="height and width of the images (default: 36)")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda (default: auto)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each measurement (default: 5)")
    parser.add_argument("--compare", action="store_true", help="also time other ways of computing the products")
    args = parser.parse_args()
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)

    # Model, batch and step of a search run with two tasks.
    torch.manual_seed(0)
    tasks, in_channels = dataset_tasks("multi_fashion")
    model = MultiTaskResNet18({name: task.output_channels for name, task in tasks.items()}, in_channels).to(device)
    images = torch.randn(args.batch_size, in_channels, args.image_size, args.image_size, device=device)
    targets = {name: torch.randint(0, 10, (args.batch_size,), device=device) for name in tasks}
    step = GradientStep(model, tasks, RowSum())
    recorder = ConflictRecorder.for_model(model, capacity=args.repeats + 2, device=device)

    # Steps and record() on their Jacobians alternate, so that both meet the same load on a
    # shared machine. The first round is a warm-up.
    step_times, record_times = [], []
    for _ in range(args.repeats + 1):
        step_times.append(seconds(lambda: step(images, targets), device))
        record_times.append(seconds(lambda: recorder.record(step.J, len(record_times)), device))
    step_time = statistics.median(step_times[1:])
    record_time = statistics.median(record_times[1:])
    J = step.J

    layers = shared_layers(model)
    print(f"device {device}, {torch.get_num_threads()} threads; ResNet-18, batch {args.batch_size}, "
          f"{args.image_size}x{args.image_size} images; J {tuple(J.shape)}, {len(layers)} layers")
    print(f"step (forward + {J.shape[0]} backward passes + method): {step_time * 1e3:9.2f} ms")
    print(f"record (chunked batched products):          {record_time * 1e3:9.2f} ms  "
          f"= {100 * record_time / step_time:.2f}% of the step")
    if args.compare:
        for name, function in alternatives(J, recorder).items():
            elapsed = median_seconds(function, device, args.repeats)
            print(f"  {name:<40} {elapsed * 1e3:9.2f} ms  = {elapsed / record_time:.1f}x record")


if __name__ == "__main__":
    main()
