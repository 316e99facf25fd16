"""Stopping a run cleanly on SIGINT or SIGTERM: finish the step, write a checkpoint, exit."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

logger = logging.getLogger(__name__)

#: The signals that end a run after its current step, and how the user usually sends them.
STOP_SIGNALS = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM"}


class TrainingInterrupted(Exception):
    """Training stopped on a signal after writing a checkpoint; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signal_number: int, run_dir: Path, epoch: int, epoch_step: int, step: int) -> None:
        self.signal_number = signal_number
        self.run_dir = run_dir
        self.exit_code = 128 + signal_number
        name = STOP_SIGNALS.get(signal_number, signal.Signals(signal_number).name)
        super().__init__(
            f"training stopped by {name} at step {step} (epoch {epoch + 1}, {epoch_step} steps into it); "
            f"the checkpoint is in {run_dir / 'checkpoints'}. Continue the run with: recon train --resume {run_dir}"
        )


class StopSignals:
    """Context manager that turns SIGINT and SIGTERM into a request to stop after the current step.

    While active, the first signal sets ``received`` (the signal number) and the
    trainer checks it after every step. A second signal raises
    ``KeyboardInterrupt`` at once, for a user who does not want to wait. The
    last checkpoint written stays valid because checkpoints are replaced
    atomically. Handlers can be installed only in the main thread, so in
    another thread this does nothing and signals keep their usual effect.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is not threading.main_thread():
            logger.debug("not in the main thread: SIGINT and SIGTERM will not write a checkpoint")
            return self
        for number in STOP_SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.received is not None:
            raise KeyboardInterrupt(f"second stop signal ({STOP_SIGNALS[number]}): stopping without a checkpoint")
        self.received = number
        logger.warning("received %s: stopping after the current step and writing a checkpoint "
                       "(send it again to stop at once)", STOP_SIGNALS[number])
