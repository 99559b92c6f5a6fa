"""One search step's rules, apart from the search loop (fairseq's ``search.py`` split): what a
step may emit (``constrain``), EOS where nothing else may follow (``force_eos``), n-gram blocking,
and the per-row top-k the beam picks from. Pure tensor functions: no host reads, no state.
"""

from __future__ import annotations

import torch
from torch import Tensor

from s2s_model.config import DecodeConfig
from s2s_model.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from s2s_model.wordpieces import WordPieces, ban_repeated_words, finish_copied_words

NEG_INF = float("-inf")


def constrain(
    log_probs: Tensor,
    history: Tensor,
    steps: Tensor,
    max_lens: Tensor,
    config: DecodeConfig,
    vocab: Tensor | None = None,
    src: Tensor | None = None,
    words: WordPieces | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Apply the decoding rules to one step's log-probabilities, in place.

    Args:
        log_probs: (N, C) the model's log-probabilities for the next token (overwritten).
        history: (N, W) tokens emitted so far, right-aligned, PAD on the left.
        steps: (N,) tokens emitted so far by each row.
        max_lens: (N,) maximum tokens (EOS excluded) for each row's document.
        vocab: (C,) sorted ids of the columns when shortlisting (None: column = id). A shortlist
            always holds the special ids, so they keep their own columns.
        src: (N, S) each row's source tokens, PAD after the end (for ``whole_words``).
        words: the vocabulary's word starts, needed by ``whole_words`` and ``no_repeat_words``.

    Returns:
        ``log_probs`` with forbidden tokens at -inf; ``forced`` (N,) bool, the rows that may
        only end: at their maximum length, or with every token forbidden (so no hypothesis is
        left without a way to end); and ``eos`` (N,), the log-probability of EOS in such a row.
        Apply ``force_eos`` to whatever is picked from ``log_probs``.
    """
    eos = log_probs[:, EOS_ID].clone()  # (N,)
    for banned in (PAD_ID, BOS_ID, UNK_ID) if config.ban_unk else (PAD_ID, BOS_ID):
        log_probs[:, banned] = NEG_INF  # one column at a time: a list index would stop a GPU
    if config.min_len:
        log_probs[:, EOS_ID] = log_probs[:, EOS_ID].masked_fill(steps < config.min_len, NEG_INF)
    # Rows at their maximum length: EOS is forced (OpenNMT-py instead ends them as they are).
    forced = (
        max_lens <= steps
        if config.compat != "opennmt"
        else torch.zeros_like(steps, dtype=torch.bool)
    )
    if config.no_repeat_ngram_size:
        log_probs = ban_repeated_ngrams(log_probs, history, config.no_repeat_ngram_size, vocab)
    if config.whole_words or config.no_repeat_words:
        if words is None:
            raise ValueError("whole_words and no_repeat_words need the word pieces: pass words=")
        if config.whole_words:
            assert src is not None, "whole_words needs each row's source"
            log_probs = finish_copied_words(log_probs, history, src, words, vocab)
        if config.no_repeat_words:
            log_probs = ban_repeated_words(log_probs, history, words, vocab)
    if config.no_repeat_ngram_size or config.whole_words or config.no_repeat_words:
        # Only these rules can forbid a whole row (the model's log-probs are finite).
        forced = forced | torch.isinf(log_probs).all(dim=-1)
    return log_probs, forced, eos


def force_eos(
    values: Tensor, columns: Tensor, forced: Tensor, eos: Tensor
) -> tuple[Tensor, Tensor]:
    """The best ``values`` (N, k) and ``columns`` (N, k) picked per row, with each ``forced``
    (N,) row's replaced by its only choice: EOS with log-prob ``eos`` (N,), then -inf.

    The same as picking from rows set to -inf but for EOS, without a pass over (N, C) or a host
    branch: picks at -inf never finish nor continue a live hypothesis, so which column they
    name does not matter (EOS here).
    """
    only = torch.full_like(values, NEG_INF)
    only[:, 0] = eos
    row = forced.unsqueeze(1)
    return torch.where(row, only, values), torch.where(row, EOS_ID, columns)


def ban_repeated_ngrams(log_probs: Tensor, history: Tensor, n: int, vocab: Tensor | None) -> Tensor:
    """Forbid every token that would complete an n-gram already in ``history`` (N, W).

    History is PAD on the left; PAD is never emitted, so a window holding PAD can only match a
    prefix with PAD at the same places, which never occurs before the prefix itself. With a
    shortlist, ids map to their columns in ``vocab`` (every emitted id is in it).
    """
    rows, width = history.shape
    if width < n:
        return log_probs
    grams = history.unfold(1, n, 1)  # (N, W - n + 1, n)
    prefix = history[:, width - (n - 1) :]  # (N, n - 1)
    match = (grams[:, :, :-1] == prefix.unsqueeze(1)).all(dim=-1)  # (N, W - n + 1)
    last = grams[:, :, -1]
    if vocab is not None:
        last = torch.searchsorted(vocab, last.contiguous())
    columns = log_probs.size(1)
    banned = torch.where(match, last, torch.full_like(match, columns, dtype=torch.long))
    extended = torch.cat([log_probs, log_probs.new_zeros(rows, 1)], dim=1)  # (N, C + 1)
    return extended.scatter(1, banned, NEG_INF)[:, :columns]


def row_topk(scores: Tensor, k: int, block: int = 128) -> tuple[Tensor, Tensor]:
    """The ``min(k, C)`` largest values of each row of ``scores`` (N, C), and their columns.

    The same as ``scores.topk``, about twice as fast on wide rows: the k largest values lie in
    the k blocks of ``block`` columns with the largest maxima, so a fast max over blocks narrows
    the selection to k x ``block`` columns. Rows whose width is not a multiple of ``block`` (or
    too narrow to gain) use ``topk`` directly.
    """
    rows, width = scores.shape
    k = min(k, width)
    if width % block or width < 4 * k * block:
        values, columns = scores.topk(k, dim=1)
        return values, columns
    blocks = scores.view(rows, width // block, block)
    best = blocks.amax(dim=2).topk(k, dim=1).indices  # (N, k) blocks
    picked = blocks.gather(1, best.unsqueeze(2).expand(rows, k, block)).view(rows, k * block)
    values, places = picked.topk(k, dim=1)  # (N, k)
    columns = best.gather(1, places // block) * block + places % block
    return values, columns
