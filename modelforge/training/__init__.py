"""The worker side: what runs a job inside its worker process (`python -m modelforge.training.worker JOB`).

The pipeline, before/after evaluation, healing, progress, the ranks of a distributed job and their launcher. These
modules import torch, transformers, peft and trl freely; nothing outside this folder imports them at module level,
so the web process never loads the training stack (tests/test_repository.py checks it). What the Playground and the
export child share with training (loading, runtime, prediction) lives outside, importing torch inside its functions.
"""
