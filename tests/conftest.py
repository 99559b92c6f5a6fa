"""Shared fixtures: tiny seeded tokenizers, models and checkpoints built at test time."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from s2s_model import ModelConfig, Seq2Seq, Tokenizer, save_checkpoint

WORDS = [
    "the",
    "package",
    "provides",
    "a",
    "library",
    "for",
    "parsing",
    "fast",
    "small",
    "tools",
    "data",
    "files",
    "with",
    "support",
    "python",
    "bindings",
    "documentation",
    "development",
    "headers",
    "server",
    "client",
    "network",
    "audio",
    "video",
    "image",
    "text",
    "format",
    "command",
    "line",
    "utility",
    "daemon",
    "plugin",
    "module",
    "kernel",
    "driver",
    "font",
    "theme",
]


def make_texts(count: int, seed: int = 0, min_words: int = 3, max_words: int = 40) -> list[str]:
    """Deterministic pseudo-sentences over a small vocabulary."""
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))) + "."
        for _ in range(count)
    ]


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Tokenizer:
    return Tokenizer.train(make_texts(400), vocab_size=64)


def tiny_model(vocab_size: int, seed: int = 0, **overrides: object) -> Seq2Seq:
    torch.manual_seed(seed)
    fields: dict[str, object] = {"embed_dim": 16, "hidden_size": 16, "num_layers": 1}
    fields.update(overrides)
    config = ModelConfig(vocab_size=vocab_size, **fields)  # type: ignore[arg-type]
    return Seq2Seq(config).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Tokenizer) -> Path:
    """A random tiny model saved as a real checkpoint directory."""
    directory = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_checkpoint(directory, tiny_model(tiny_tokenizer.vocab_size), tiny_tokenizer)
    return directory


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread, for the tests that hold a wall-clock budget: on a busy machine two
    OpenMP threads wait on each other for seconds at a time
    (../shared/anchors/opennmt/README.md), which no budget can foresee."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
