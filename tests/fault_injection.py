"""Faults injected into the real pipeline, for tests only: subclasses of the model handler.

A test puts one of these in place of ``pipeline.run.Seq2SeqModelHandler`` (monkeypatch in
process, or ``DRIVER`` in a fresh launcher process). Beam pickles the handler by reference, so
worker processes import this module and inject the same fault. Each fault fires a fixed number
of times across all processes of a run: a firing claims a marker file in ``$S2S_FAULTS_DIR``
with ``O_EXCL``, which only one process can win; the markers also prove the fault fired.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from apache_beam.ml.inference.base import PredictionResult

from pipeline.model_handler import Seq2SeqModelHandler
from pipeline.sources import Record
from s2s_model import DecodeConfig, Source, Summarizer, Summary

FAULTS_DIR_ENV = "S2S_FAULTS_DIR"
KILL_AT_ENV = "S2S_KILL_AT"  # which inference call (counted over all processes) dies
KILL_BEFORE_PROMOTE_ENV = "S2S_KILL_BEFORE_PROMOTE"  # the launcher dies once the job is done
OOM_ABOVE = 4  # windows of more documents than this "run out of memory"
COLOSSAL = "colossal"  # a document holding this runs out of memory even alone

# Runs the pipeline with the handler named in argv[1] ("module:Class"); prints one JSON line.
DRIVER = """
import importlib, json, os, signal, sys
from pipeline import run as run_module
module, name = sys.argv[1].split(":")
run_module.Seq2SeqModelHandler = getattr(importlib.import_module(module), name)
if os.environ.get("S2S_KILL_BEFORE_PROMOTE"):
    run_module.promote = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
try:
    report = run_module.run(sys.argv[2:])
    print(json.dumps({"ok": True, "counts": report.manifest["counts"]}))
except run_module.RunFailed as err:
    print(json.dumps({"ok": False, "error": str(err)}))
"""


def faults_dir() -> Path:
    return Path(os.environ[FAULTS_DIR_ENV])


def claim(name: str) -> bool:
    """True for exactly one caller per ``name``, in any process."""
    try:
        os.close(os.open(faults_dir() / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def next_call(name: str) -> int:
    """1 for the first caller of ``name`` in any process, 2 for the second, ..."""
    number = 1
    while not claim(f"{name}.{number}"):
        number += 1
    return number


def fired(name: str) -> int:
    """How many times the fault ``name`` fired (markers ``name`` or ``name.N``)."""
    return len([p for p in faults_dir().glob(f"{name}*") if p.name.split(".")[0] == name])


class KillProcessAtCall(Seq2SeqModelHandler):
    """The process running inference call number ``$S2S_KILL_AT`` is SIGKILLed on the spot,
    as the kernel's OOM killer or a lost machine would."""

    def run_inference(
        self,
        batch: Sequence[Record],
        model: Summarizer,
        inference_args: Mapping[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        if next_call("inference") == int(os.environ.get(KILL_AT_ENV, "1")):
            claim("killed")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().run_inference(batch, model, inference_args)


class RaiseInBundle(Seq2SeqModelHandler):
    """The first inference call raises out of the handler: the bundle fails."""

    def run_inference(
        self,
        batch: Sequence[Record],
        model: Summarizer,
        inference_args: Mapping[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        if claim("bundle_error"):
            raise RuntimeError("injected bundle failure")
        return super().run_inference(batch, model, inference_args)


class WrappedModel(Seq2SeqModelHandler):
    """The real model, with ``summarize_sources`` (what the handler calls) wrapped by ``fault``
    (the texts of the call -> raise or not)."""

    def fault(self, texts: Sequence[str]) -> None:
        raise NotImplementedError

    def load_model(self) -> Summarizer:
        model = super().load_model()
        summarize_sources = model.summarize_sources

        def wrapped(
            sources: Sequence[Source], decode: DecodeConfig | None = None, **options: Any
        ) -> list[Summary]:
            self.fault([source.text for source in sources])
            return summarize_sources(sources, decode, **options)

        model.summarize_sources = wrapped  # type: ignore[method-assign]
        return model


class TransientOnFirstAttempt(WrappedModel):
    """The first call to the model fails as a flaky device or driver would, once."""

    def fault(self, texts: Sequence[str]) -> None:
        if claim("transient"):
            raise RuntimeError("injected transient failure: CUDA error: launch timeout")


class OutOfMemoryAbove(WrappedModel):
    """Windows of more than OOM_ABOVE documents, and any holding COLOSSAL, run out of memory."""

    def fault(self, texts: Sequence[str]) -> None:
        if len(texts) > OOM_ABOVE or any(COLOSSAL in t for t in texts):
            next_call("oom")
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB (injected for a test)"
            )
