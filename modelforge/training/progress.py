"""A TrainerCallback that reports progress to the job store and stops training when the user cancels, or when the
job store cannot be reached (with a checkpoint either way).

In a distributed job every rank runs it: rank 0 writes, and its decision to stop is broadcast so that every rank
stops (and saves its part of the checkpoint) at the same step.
"""

from __future__ import annotations

import time

from transformers import TrainerCallback

from modelforge import store
from modelforge.db import CONNECTION_ERRORS, unreachable
from modelforge.errors import DatabaseError
from modelforge.training import ranks


class ProgressCallback(TrainerCallback):
    """Writes step, ETA and tokens/s at most every `interval` seconds, and every logged metric.

    The pipeline names the `stage` being trained and, for a strategy of several stages (rlhf), sets `step_offset` to
    the steps of the stages before, so the job's step counter and its loss curve run on across stages.
    """

    def __init__(self, job_id: int, interval: float = 1.0):
        self.job_id = job_id
        self.interval = interval
        self.stage = "training"
        self.step_offset = 0
        self.cancelled = False
        self.database_lost: DatabaseError | None = None
        self._last_write = 0.0
        self._start_time = 0.0
        self._start_step = 0
        self._start_tokens = 0

    def _rates(self, state) -> tuple[float | None, float | None]:
        elapsed = time.monotonic() - self._start_time
        steps_done = state.global_step - self._start_step
        if elapsed <= 0 or steps_done <= 0:
            return None, None
        tokens_per_second = (state.num_input_tokens_seen - self._start_tokens) / elapsed or None
        eta = (state.max_steps - state.global_step) * elapsed / steps_done
        return tokens_per_second, max(eta, 0.0)

    def on_train_begin(self, args, state, control, **kwargs):
        self._start_time = time.monotonic()
        self._start_step = state.global_step
        self._start_tokens = state.num_input_tokens_seen
        ranks.record(self.job_id, "training", step=state.global_step)
        if not state.is_world_process_zero:
            return
        store.update(
            self.job_id,
            stage=self.stage,
            total_steps=self.step_offset + state.max_steps,
            step=self.step_offset + state.global_step,
        )

    def on_step_end(self, args, state, control, **kwargs):
        stop = state.is_world_process_zero and (self._write_progress(state) or self.database_lost is not None)
        if ranks.agree(stop):
            # Save a checkpoint at this step so `resume` continues from here.
            self.cancelled = self.database_lost is None
            control.should_save = True
            control.should_training_stop = True
            ranks.record(self.job_id, "cancelled", step=state.global_step)

    def _write_progress(self, state) -> bool:
        """Write the step, rate and ETA at most every `interval` seconds; whether the user asked to cancel."""
        now = time.monotonic()
        if now - self._last_write < self.interval and state.global_step < state.max_steps:
            return False
        self._last_write = now
        tokens_per_second, eta = self._rates(state)
        try:
            store.update(self.job_id, **self._position(state), tokens_per_second=tokens_per_second, eta_seconds=eta)
            return store.cancel_requested(self.job_id)
        except CONNECTION_ERRORS as exc:
            self.database_lost = unreachable(exc)
            return False

    def _position(self, state) -> dict:
        """The job's step (across stages) and epoch."""
        return {"step": self.step_offset + state.global_step, "epoch": state.epoch}

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if not state.is_world_process_zero or ("loss" not in logs and "eval_loss" not in logs):
            return
        tokens_per_second, _ = self._rates(state)
        try:
            store.record_metrics(
                self.job_id,
                **self._position(state),
                loss=logs.get("loss"),
                eval_loss=logs.get("eval_loss"),
                learning_rate=logs.get("learning_rate"),
                tokens_per_second=tokens_per_second,
            )
        except CONNECTION_ERRORS as exc:
            # Training on unseen would leave the job's record behind its files: stop with a checkpoint instead (ranks
            # of a distributed job at the next step's end, where they all hear of it).
            self.database_lost = unreachable(exc)
            if ranks.world_size() == 1:
                control.should_save = control.should_training_stop = True
