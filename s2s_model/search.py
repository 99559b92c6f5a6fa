"""Greedy and batched beam search over a (batch x beam) state.

Beam search follows fairseq's ``SequenceGenerator``: each step keeps the 2K best candidates of a
document so that hypotheses ending in EOS never starve the beam; EOS candidates ranked among the
top K are finished, and the top K others continue. A document stops when it has K finished
hypotheses, when no live hypothesis can still beat its n-th best finished one (an exact bound, so
stopping early never changes the result), or when its maximum length forces EOS. Stopped
documents leave the batch, so the tensors shrink as the batch finishes.

Semantics (they are the contract tests check):
- a hypothesis ends when it emits EOS; at its document's maximum length EOS is forced, and that
  EOS's log-probability counts;
- the maximum length is per document: ``DecodeConfig.max_len_for(src_len)``; EOS is impossible
  before ``min_len`` tokens;
- PAD and BOS are never emitted; with ``ban_unk`` neither is UNK;
- ``score = log_prob / penalty(len)`` where ``len`` counts the tokens plus EOS;
- ``no_repeat_ngram_size = n`` forbids any n-gram from occurring twice in a hypothesis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from s2s_model.config import DecodeConfig
from s2s_model.model import Seq2Seq
from s2s_model.state import DecoderState, Memory
from s2s_model.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID

NEG_INF = float("-inf")


@dataclass(frozen=True)
class Hypothesis:
    """A finished summary: ``tokens`` without BOS or EOS, ``score`` ranks, ``log_prob`` sums."""

    tokens: list[int]
    score: float
    log_prob: float


def constrain(log_probs: Tensor, history: Tensor, max_lens: Tensor, config: DecodeConfig) -> Tensor:
    """Apply the decoding rules to one step's log-probabilities, in place.

    Args:
        log_probs: (N, V) the model's log-probabilities for the next token (overwritten).
        history: (N, t) tokens emitted so far (no BOS).
        max_lens: (N,) maximum tokens (EOS excluded) for each row's document.

    Returns:
        ``log_probs`` with forbidden tokens at -inf. A row whose every token is forbidden gets
        EOS back, so no hypothesis is left without a way to end.
    """
    step = history.size(1)
    eos = log_probs[:, EOS_ID].clone()  # (N,)
    banned = [PAD_ID, BOS_ID] + ([UNK_ID] if config.ban_unk else [])
    log_probs[:, banned] = NEG_INF
    if step < config.min_len:
        log_probs[:, EOS_ID] = NEG_INF
    reopen = max_lens <= step  # (N,) rows at their maximum length: EOS is forced
    if config.no_repeat_ngram_size:
        log_probs = _ban_repeated_ngrams(log_probs, history, config.no_repeat_ngram_size)
        # Only n-gram blocking can forbid a whole row (the model's log-probs are finite).
        reopen = reopen | torch.isinf(log_probs).all(dim=-1)
    if bool(reopen.any()):
        log_probs[reopen] = NEG_INF
        log_probs[reopen, EOS_ID] = eos[reopen]
    return log_probs


def _ban_repeated_ngrams(log_probs: Tensor, history: Tensor, n: int) -> Tensor:
    """Forbid every token that would complete an n-gram already in ``history`` (N, t)."""
    rows, step = history.shape
    if step < n:
        return log_probs
    grams = history.unfold(1, n, 1)  # (N, t - n + 1, n)
    prefix = history[:, step - (n - 1) :]  # (N, n - 1)
    match = (grams[:, :, :-1] == prefix.unsqueeze(1)).all(dim=-1)  # (N, t - n + 1)
    vocab = log_probs.size(1)
    banned = torch.where(match, grams[:, :, -1], torch.full_like(match, vocab, dtype=torch.long))
    extended = torch.cat([log_probs, log_probs.new_zeros(rows, 1)], dim=1)  # (N, V + 1)
    return extended.scatter(1, banned, NEG_INF)[:, :vocab]


@torch.inference_mode()
def greedy_search(
    model: Seq2Seq, src: Tensor, src_len: Tensor, config: DecodeConfig
) -> list[list[Hypothesis]]:
    """Pick the most likely allowed token at every step. One hypothesis per document.

    Args:
        src: (B, S) token ids; src_len: (B,) lengths.
    """
    memory, state = model.encode(src, src_len)
    batch = src.size(0)
    max_lens = _max_lens(src_len, config).to(src.device)
    history = src.new_zeros(batch, 0)
    total = torch.zeros(batch, device=src.device, dtype=torch.float32)
    finished: list[Hypothesis | None] = [None] * batch
    last = torch.full((batch,), BOS_ID, dtype=torch.long, device=src.device)
    while any(h is None for h in finished):
        log_probs, state = model.decode_step(last, state, memory)
        step_lp, last = constrain(log_probs, history, max_lens, config).max(dim=-1)
        total = total + step_lp.float()
        for row in (last == EOS_ID).nonzero().flatten().tolist():
            if finished[row] is None:
                finished[row] = _hypothesis(history[row].tolist(), float(total[row]), config)
        history = torch.cat([history, last.unsqueeze(1)], dim=1)
    return [[h] for h in finished if h is not None]


@dataclass
class _Active:
    """The documents still being searched, K rows each, document-major."""

    docs: list[int]  # original index of each active document
    memory: Memory
    state: DecoderState
    history: Tensor  # (B * K, t)
    beam_lp: Tensor  # (B, K) cumulative log-probabilities
    max_lens: Tensor  # (B,)
    floor: Tensor  # (B,) n_best-th finished score, -inf until there are n_best

    def keep(self, keep_docs: Tensor, beams: int) -> _Active:
        rows = keep_docs.unsqueeze(1) * beams + torch.arange(beams, device=keep_docs.device)
        rows = rows.flatten()
        return _Active(
            docs=[self.docs[i] for i in keep_docs.tolist()],
            memory=self.memory.index_select(keep_docs),
            state=self.state.index_select(rows),
            history=self.history.index_select(0, rows),
            beam_lp=self.beam_lp.index_select(0, keep_docs),
            max_lens=self.max_lens.index_select(0, keep_docs),
            floor=self.floor.index_select(0, keep_docs),
        )


@torch.inference_mode()
def beam_search(
    model: Seq2Seq, src: Tensor, src_len: Tensor, config: DecodeConfig
) -> list[list[Hypothesis]]:
    """Batched beam search; ``n_best`` hypotheses per document, best first.

    Args:
        src: (B, S) token ids, PAD after each end; src_len: (B,) lengths.
    """
    beams = config.beam_size
    memory, state = model.encode(src, src_len)
    batch = src.size(0)
    beam_lp = torch.full((batch, beams), NEG_INF, device=src.device)
    beam_lp[:, 0] = 0.0  # all K rows start identical: expand only the first
    active = _Active(
        docs=list(range(batch)),
        memory=memory,
        state=state.repeat_rows(beams),
        history=src.new_zeros(batch * beams, 0),
        beam_lp=beam_lp,
        max_lens=_max_lens(src_len, config).to(src.device),
        floor=torch.full((batch,), NEG_INF, device=src.device),
    )
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    while active.docs:
        active = _step(model, active, finished, config)
    return [sorted(f, key=lambda h: -h.score)[: config.n_best] for f in finished]


def _step(
    model: Seq2Seq, active: _Active, finished: list[list[Hypothesis]], config: DecodeConfig
) -> _Active:
    """One beam step for every active document; returns the documents still active."""
    beams, batch = config.beam_size, len(active.docs)
    step = active.history.size(1)
    last = (
        active.history[:, -1]
        if step
        else torch.full((batch * beams,), BOS_ID, dtype=torch.long, device=active.history.device)
    )
    log_probs, state = model.decode_step(last, active.state, active.memory)  # (B * K, V)
    vocab = log_probs.size(1)
    row_max = active.max_lens.repeat_interleave(beams)
    log_probs = constrain(log_probs, active.history, row_max, config).float()
    candidates = (active.beam_lp.view(-1, 1) + log_probs).view(batch, beams * vocab)
    top_lp, top_idx = candidates.topk(min(2 * beams, beams * vocab), dim=1)  # (B, 2K)
    parent, token = top_idx // vocab, top_idx % vocab
    is_eos = (token == EOS_ID) & torch.isfinite(top_lp)
    _finish(active, finished, config, top_lp, parent, is_eos[:, :beams])

    go_on = top_lp.masked_fill(is_eos, NEG_INF)
    sel_lp, sel_pos = go_on.topk(beams, dim=1)  # (B, K)
    doc_base = torch.arange(batch, device=sel_pos.device).unsqueeze(1) * beams
    rows = (doc_base + parent.gather(1, sel_pos)).flatten()  # (B * K,)
    history = torch.cat(
        [active.history.index_select(0, rows), token.gather(1, sel_pos).view(-1, 1)], dim=1
    )
    active.state, active.history, active.beam_lp = state.index_select(rows), history, sel_lp
    done = _done(active, finished, config)
    if bool(done.any()):
        active = active.keep((~done).nonzero().flatten(), beams)
    return active


def _finish(
    active: _Active,
    finished: list[list[Hypothesis]],
    config: DecodeConfig,
    top_lp: Tensor,
    parent: Tensor,
    eos: Tensor,
) -> None:
    """Record the EOS candidates ``eos`` (B, K) as finished hypotheses; update each floor."""
    beams = config.beam_size
    for b, j in eos.nonzero().tolist():
        row = b * beams + int(parent[b, j])
        tokens = active.history[row].tolist()
        doc = finished[active.docs[b]]
        doc.append(_hypothesis(tokens, float(top_lp[b, j]), config))
        if len(doc) >= config.n_best:
            scores = sorted((h.score for h in doc), reverse=True)
            active.floor[b] = scores[config.n_best - 1]


def _done(active: _Active, finished: list[list[Hypothesis]], config: DecodeConfig) -> Tensor:
    """(B,) bool: documents that can stop.

    A live hypothesis with cumulative log-prob ``lp <= 0`` ends with a log-prob at most ``lp`` and
    a length at most ``max_len + 1``; penalties grow with length, so its final score is at most
    ``lp / penalty(max_len + 1)``. When that bound cannot beat the n-th best finished score, no
    further step can change the result.
    """
    count = torch.tensor([len(finished[d]) for d in active.docs], device=active.beam_lp.device)
    best_live = active.beam_lp.max(dim=1).values  # (B,)
    penalties = torch.tensor(
        [config.penalty(int(m) + 1) for m in active.max_lens.tolist()],
        device=best_live.device,
    )
    cannot_improve = (best_live / penalties) <= active.floor
    no_live = torch.isinf(best_live)
    return (count >= config.beam_size) | cannot_improve | no_live


def _hypothesis(tokens: list[int], log_prob: float, config: DecodeConfig) -> Hypothesis:
    return Hypothesis(tokens, log_prob / config.penalty(len(tokens) + 1), log_prob)


def _max_lens(src_len: Tensor, config: DecodeConfig) -> Tensor:
    """(B,) per-document maximum summary length from the true (unpadded) source lengths."""
    return torch.tensor([config.max_len_for(int(n)) for n in src_len.tolist()], dtype=torch.long)
