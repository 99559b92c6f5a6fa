"""The fixed decode work of the performance issue, shared by every benchmark.

Reference model: 2-layer bidirectional LSTM encoder (256 per direction), 2-layer LSTM decoder of
512, embeddings 256 shared, vocabulary 16,000, ``general`` attention, input feeding, no copy;
random weights (the work is fixed by min_len = max_len = 30). Documents: random ids with the token
lengths of the first 1,000 documents of the Debian test split used by the OpenNMT-py anchor
(median 55, cut at 400), shipped in ``debian_test_lengths.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from s2s_model import DecodeConfig, ModelConfig, Seq2Seq

LENGTHS_FILE = Path(__file__).with_name("debian_test_lengths.json")
REFERENCE = ModelConfig(
    vocab_size=16_000, embed_dim=256, hidden_size=512, num_layers=2, attention="general",
    dropout=0.0,
)  # fmt: skip
FIXED = DecodeConfig(beam_size=4, min_len=30, max_len=30)
BATCH_DOCS = 64
MATMUL_SIZE = 2048


def reference_model(seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(REFERENCE).eval()


def documents(count: int = 1000, seed: int = 0) -> list[torch.Tensor]:
    """``count`` random sources with the Debian test lengths (cycled), longest first.

    Ids follow Zipf's law over the vocabulary (p ~ 1 / rank), as words in real text do, so that
    a vocabulary shortlist sees realistic overlap between documents.
    """
    lengths = json.loads(LENGTHS_FILE.read_text())
    gen = torch.Generator().manual_seed(seed)
    ranks = torch.arange(1, REFERENCE.vocab_size - 3, dtype=torch.float64)
    zipf = 1.0 / ranks
    docs = [
        4 + torch.multinomial(zipf, lengths[i % len(lengths)], replacement=True, generator=gen)
        for i in range(count)
    ]
    return sorted(docs, key=lambda d: -d.numel())


def decode_flops(docs: list[torch.Tensor], config: ModelConfig, decode: DecodeConfig) -> float:
    """FLOPs of the fixed work: LSTM cells, attention and output layer per beam row and step,
    plus the encoder per source token (2 FLOPs per multiply-add)."""
    e, h, v, layers = config.embed_dim, config.hidden_size, config.vocab_size, config.num_layers
    per_dir = config.encoder_hidden
    directions = 2 if config.bidirectional else 1
    enc_per_token = sum(
        directions * 2 * 4 * per_dir * ((e if layer == 0 else h) + per_dir)
        for layer in range(layers)
    )
    dec_cells = 2 * 4 * h * (e + h + h) + (layers - 1) * 2 * 4 * h * (2 * h)
    out_layer = 2 * 2 * h * h + 2 * h * v
    total = 0.0
    steps = decode.max_len + 1  # tokens plus the forced EOS
    for doc in docs:
        s = doc.numel()
        attention = 2 * s * h * 2  # scores and context
        total += enc_per_token * s + 2 * s * h * h  # encoder + keys (general), once per doc
        total += decode.beam_size * steps * (dec_cells + attention + out_layer)
    return total


def matmul_ceiling(threads: int, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of a 2048^3 matrix multiply with ``threads`` torch threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * MATMUL_SIZE**3 / best / 1e9
