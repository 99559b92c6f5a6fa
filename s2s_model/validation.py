"""Validation: loss on held-out pairs, ROUGE of real beam-search summaries, and choosing among
decoding settings by that ROUGE."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Mapping, Sequence

import torch

from s2s_model.checkpoint import Checkpoint
from s2s_model.config import DecodeConfig, RuntimeSettings, TrainConfig
from s2s_model.evaluation import rouge
from s2s_model.model import Seq2Seq
from s2s_model.objective import token_loss
from s2s_model.summarizer import Summarizer
from s2s_model.tokenizer import PAD_ID, Tokenizer
from s2s_model.training_data import EncodedPair, collate, make_batches

logger = logging.getLogger(__name__)


def validate(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    valid: Sequence[EncodedPair],
    rouge_sample: Sequence[tuple[str, str]],
    *,
    config: TrainConfig,
    decode: DecodeConfig,
    device: str = "cpu",
) -> dict[str, float]:
    """Validation NLL per token (and perplexity) on every pair of ``valid``, ROUGE of
    beam-search summaries of ``rouge_sample``, and the seconds each part took."""
    started = time.monotonic()
    scores = valid_loss(model, valid, config, device)
    scores["loss_seconds"] = time.monotonic() - started
    if rouge_sample:
        checkpoint = Checkpoint(model, tokenizer, decode, fingerprint="training")
        summarizer = Summarizer(
            checkpoint, RuntimeSettings(device=device, max_src_tokens=config.max_src_tokens)
        )
        started = time.monotonic()
        predictions = [s.text for s in summarizer.summarize([text for text, _ in rouge_sample])]
        result = rouge([summary for _, summary in rouge_sample], predictions)
        scores.update(rouge1=result.rouge1, rouge2=result.rouge2, rougeL=result.rougeL)
        scores["decode_seconds"] = time.monotonic() - started
    model.train()
    return scores


def choose_decode(
    checkpoint: Checkpoint,
    sample: Sequence[tuple[str, str]],
    candidates: Sequence[DecodeConfig],
    *,
    max_src_tokens: int,
    device: str = "cpu",
    known: Mapping[DecodeConfig, float] | None = None,
) -> list[tuple[DecodeConfig, float]]:
    """ROUGE-L of each candidate decoding on ``sample`` (text, summary), best first.

    Ties keep the earlier candidate, so list the default first. ``known`` holds scores already
    measured on this sample, which are not decoded again.
    """
    summarizer = Summarizer(
        checkpoint, RuntimeSettings(device=device, max_src_tokens=max_src_tokens)
    )
    texts, references = [text for text, _ in sample], [summary for _, summary in sample]
    scored = []
    for index, decode in enumerate(candidates):
        if known and decode in known:
            scored.append((known[decode], -index, decode))
            continue
        predictions = [s.text for s in summarizer.summarize(texts, decode)]
        scored.append((rouge(references, predictions).rougeL, -index, decode))
        logger.info("decoding %s: ROUGE-L %.2f", decode, scored[-1][0])
    scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [(decode, score) for score, _, decode in scored]


def valid_loss(
    model: Seq2Seq, valid: Sequence[EncodedPair], config: TrainConfig, device: str
) -> dict[str, float]:
    """Mean NLL per target token over every pair of ``valid`` (and its perplexity); batches
    of ``config.batch_tokens``."""
    pairs = list(valid)
    lengths = [(len(p.src), len(p.tgt)) for p in pairs]
    batches = make_batches(lengths, config.batch_tokens, random.Random(0))
    nll = tokens = 0.0
    model.eval()
    with torch.inference_mode():
        for indices in batches:
            batch = collate([pairs[i] for i in indices]).to(device)
            out = model.teacher_forced(batch.src, batch.src_len, batch.tgt_in)
            nll += float(token_loss(out.log_probs, batch.tgt_out)[1])
            tokens += int((batch.tgt_out != PAD_ID).sum())
    per_token = nll / max(1.0, tokens)
    return {"valid_nll": per_token, "valid_ppl": math.exp(min(per_token, 50.0))}
