"""Training data: pairs as token ids, length-bucketed batches, padded tensors.

The batches of an epoch depend on the seed and the epoch number alone, so a resumed run sees the
same batches in the same order as one that never stopped.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from s2s_model.config import TrainConfig
from s2s_model.model import shift_right
from s2s_model.tokenizer import EOS_ID, PAD_ID, Tokenizer

logger = logging.getLogger(__name__)

# Epoch e of seed s shuffles with seed s * EPOCH_SEED_STRIDE + e.
EPOCH_SEED_STRIDE = 100_003


@dataclass(frozen=True)
class EncodedPair:
    """Token ids of one training pair: ``tgt`` ends with EOS."""

    src: list[int]
    tgt: list[int]


@dataclass(frozen=True)
class Batch:
    """A padded batch. src (B, S), src_len (B,), tgt_in (B, T) BOS first, tgt_out (B, T)."""

    src: Tensor
    src_len: Tensor
    tgt_in: Tensor
    tgt_out: Tensor

    @property
    def tokens(self) -> int:
        """Real (unpadded) source plus target tokens."""
        return int(self.src_len.sum()) + int((self.tgt_out != PAD_ID).sum())

    def to(self, device: str) -> Batch:
        """The batch on ``device``; to a GPU from pinned memory, without waiting for the copy."""
        tensors = (self.src, self.src_len, self.tgt_in, self.tgt_out)
        if device.startswith("cuda"):
            return Batch(*(t.pin_memory().to(device, non_blocking=True) for t in tensors))
        return Batch(*(t.to(device) for t in tensors))


def train_tokenizer(pairs: Sequence[tuple[str, str]], config: TrainConfig) -> Tokenizer:
    """SentencePiece on the sources and summaries of ``pairs`` (a seeded sample if many)."""
    texts = [text for pair in pairs for text in pair]
    if len(texts) > config.tokenizer_sentences:
        texts = random.Random(config.seed).sample(texts, config.tokenizer_sentences)
    logger.info("training a %d-piece tokenizer on %d texts", config.vocab_size, len(texts))
    return Tokenizer.train(
        texts,
        vocab_size=config.vocab_size,
        model_type=config.tokenizer_type,
        byte_fallback=config.byte_fallback,
        lowercase=config.lowercase,
    )


def encode_pairs(
    tokenizer: Tokenizer, pairs: Sequence[tuple[str, str]], config: TrainConfig
) -> list[EncodedPair]:
    """Token ids of ``pairs``, truncated; pairs whose source encodes to nothing are dropped."""
    encoded = []
    for text, summary in pairs:
        src = tokenizer.encode(text)[: config.max_src_tokens]
        if src:
            tgt = [*tokenizer.encode(summary)[: config.max_tgt_tokens], EOS_ID]
            encoded.append(EncodedPair(src, tgt))
    if len(encoded) < len(pairs):
        logger.warning("dropped %d pairs with an empty source", len(pairs) - len(encoded))
    return encoded


def make_batches(
    lengths: Sequence[tuple[int, int]], batch_tokens: int, rng: random.Random
) -> list[list[int]]:
    """Group pair indices into batches of similar length, then shuffle the batches.

    Args:
        lengths: (source, target) token counts per pair.
        batch_tokens: a batch's padded size, docs x (longest source + longest target), stays
            within this (a single longer pair forms a batch of its own).
        rng: decides ties in the length order and the order of the batches.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches: list[list[int]] = []
    current: list[int] = []
    longest_src = longest_tgt = 0
    for index in order:
        src, tgt = lengths[index]
        wide_src, wide_tgt = max(longest_src, src), max(longest_tgt, tgt)
        if current and (len(current) + 1) * (wide_src + wide_tgt) > batch_tokens:
            batches.append(current)
            current, wide_src, wide_tgt = [], src, tgt
        current.append(index)
        longest_src, longest_tgt = wide_src, wide_tgt
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def collate(pairs: Sequence[EncodedPair]) -> Batch:
    """Pad ``pairs`` into a :class:`Batch`; targets are shifted right behind BOS for input."""
    longest_src = max(len(p.src) for p in pairs)
    longest_tgt = max(len(p.tgt) for p in pairs)
    src = torch.full((len(pairs), longest_src), PAD_ID, dtype=torch.long)
    tgt_out = torch.full((len(pairs), longest_tgt), PAD_ID, dtype=torch.long)
    for row, pair in enumerate(pairs):
        src[row, : len(pair.src)] = torch.tensor(pair.src)
        tgt_out[row, : len(pair.tgt)] = torch.tensor(pair.tgt)
    # A row's EOS only precedes padding: as an input it would predict nothing, so PAD it.
    shifted = shift_right(tgt_out)
    tgt_in = shifted.masked_fill(shifted == EOS_ID, PAD_ID)
    src_len = torch.tensor([len(p.src) for p in pairs], dtype=torch.long)
    return Batch(src, src_len, tgt_in, tgt_out)


def epoch_batches(pairs: Sequence[EncodedPair], config: TrainConfig, epoch: int) -> list[list[int]]:
    """The batches of ``epoch``: the same for the same seed, whether resumed or not."""
    rng = random.Random(config.seed * EPOCH_SEED_STRIDE + epoch)
    lengths = [(len(p.src), len(p.tgt)) for p in pairs]
    return make_batches(lengths, config.batch_tokens, rng)
