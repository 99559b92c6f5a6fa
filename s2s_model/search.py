"""Greedy and batched beam search over a (batch x beam) state.

Beam search follows fairseq's ``SequenceGenerator``: each step keeps the 2K best candidates of a
document so that hypotheses ending in EOS never starve the beam; EOS candidates ranked among the
top K are finished, and the top K others continue. A document stops when it has K finished
hypotheses, when no live hypothesis can still beat its n-th best finished one (an exact bound, so
stopping early never changes the result), or when its maximum length forces EOS. Stopped
documents leave the batch, so the tensors shrink as the batch finishes. With a token budget,
waiting documents take the freed rows instead (continuous batching), so the batch stays full to
the end; a document's result does not depend on which documents share its batch, so refilling
never changes an answer.

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

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from s2s_model.config import DecodeConfig
from s2s_model.model import Seq2Seq
from s2s_model.state import DecoderState, Memory
from s2s_model.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from s2s_model.wordpieces import WordPieces, ban_repeated_words, finish_copied_words

NEG_INF = float("-inf")


@dataclass(frozen=True)
class Hypothesis:
    """A finished summary: ``tokens`` without BOS or EOS, ``score`` ranks, ``log_prob`` sums."""

    tokens: list[int]
    score: float
    log_prob: float


def constrain(
    log_probs: Tensor,
    history: Tensor,
    steps: Tensor,
    max_lens: Tensor,
    config: DecodeConfig,
    vocab: Tensor | None = None,
    src: Tensor | None = None,
    words: WordPieces | None = None,
) -> Tensor:
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
        ``log_probs`` with forbidden tokens at -inf. A row whose every token is forbidden gets
        EOS back, so no hypothesis is left without a way to end.
    """
    eos = log_probs[:, EOS_ID].clone()  # (N,)
    banned = [PAD_ID, BOS_ID] + ([UNK_ID] if config.ban_unk else [])
    log_probs[:, banned] = NEG_INF
    if config.min_len:
        log_probs[:, EOS_ID] = log_probs[:, EOS_ID].masked_fill(steps < config.min_len, NEG_INF)
    # Rows at their maximum length: EOS is forced (OpenNMT-py instead ends them as they are).
    reopen = (
        max_lens <= steps
        if config.compat != "opennmt"
        else torch.zeros_like(steps, dtype=torch.bool)
    )
    if config.no_repeat_ngram_size:
        log_probs = _ban_repeated_ngrams(log_probs, history, config.no_repeat_ngram_size, vocab)
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
        reopen = reopen | torch.isinf(log_probs).all(dim=-1)
    if bool(reopen.any()):
        log_probs[reopen] = NEG_INF
        log_probs[reopen, EOS_ID] = eos[reopen]
    return log_probs


def _ban_repeated_ngrams(
    log_probs: Tensor, history: Tensor, n: int, vocab: Tensor | None
) -> Tensor:
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


@torch.inference_mode()
def greedy_search(
    model: Seq2Seq,
    src: Tensor,
    src_len: Tensor,
    config: DecodeConfig,
    *,
    words: WordPieces | None = None,
) -> list[list[Hypothesis]]:
    """Pick the most likely allowed token at every step. One hypothesis per document.

    Args:
        src: (B, S) token ids; src_len: (B,) lengths.
        words: the vocabulary's word starts, for ``whole_words`` and ``no_repeat_words``.
    """
    memory, state = model.encode(src, src_len)
    batch = src.size(0)
    max_lens = _max_lens(src_len, config).to(src.device)
    history = src.new_full((batch, _width(config)), PAD_ID)
    total = torch.zeros(batch, device=src.device, dtype=torch.float32)
    finished: list[Hypothesis | None] = [None] * batch
    last = torch.full((batch,), BOS_ID, dtype=torch.long, device=src.device)
    step = 0
    while any(h is None for h in finished):
        log_probs, state = model.decode_step(last, state, memory)
        steps = torch.full_like(max_lens, step)
        allowed = constrain(log_probs, history, steps, max_lens, config, None, src, words)
        step_lp, last = allowed.max(dim=-1)
        total = total + step_lp.float()
        for row in (last == EOS_ID).nonzero().flatten().tolist():
            if finished[row] is None:
                tokens = history[row, history.size(1) - step :].tolist()
                finished[row] = _hypothesis(tokens, float(total[row]), config)
        history = torch.cat([history[:, 1:], last.unsqueeze(1)], dim=1)
        step += 1
    return [[h] for h in finished if h is not None]


@dataclass
class SearchStats:
    """Work counters a caller passes to a search and reads afterwards (summed over steps).

    The encoder reads packed sequences, so padding costs only where the decoder attends: at each
    step every active document attends over the longest active source.

    Attributes:
        source_tokens: real source positions attended, per document and step.
        padded_source_tokens: positions attended, padding included (documents x longest).
        steps: decoding steps run.
    """

    source_tokens: int = 0
    padded_source_tokens: int = 0
    steps: int = 0

    @property
    def padding_efficiency(self) -> float | None:
        """Real / padded positions attended (None before any step)."""
        if not self.padded_source_tokens:
            return None
        return self.source_tokens / self.padded_source_tokens

    def add(self, other: SearchStats) -> None:
        """Add ``other``'s counts to these."""
        self.source_tokens += other.source_tokens
        self.padded_source_tokens += other.padded_source_tokens
        self.steps += other.steps

    def count(self, src_len: Tensor, longest: int) -> None:
        """Record one step over documents with source lengths ``src_len`` (B,)."""
        self.source_tokens += int(src_len.sum())
        self.padded_source_tokens += src_len.numel() * longest
        self.steps += 1


@dataclass
class _Active:
    """The documents being searched, K rows each, document-major."""

    docs: list[int]  # original index of each active document
    src_len: Tensor  # (B,)
    memory: Memory
    state: DecoderState
    history: Tensor  # (B * K, W) right-aligned, PAD on the left
    steps: Tensor  # (B,) tokens emitted so far
    beam_lp: Tensor  # (B, K) cumulative log-probabilities
    max_lens: Tensor  # (B,)
    floor: Tensor  # (B,) n_best-th finished score, -inf until there are n_best
    count: Tensor  # (B,) finished hypotheses so far
    bound: Tensor  # (B,) penalty(max_len + 1): the largest a hypothesis can get

    def keep(self, keep_docs: Tensor, beams: int) -> _Active:
        """Only the documents ``keep_docs``; the source axis shrinks to the longest kept."""
        rows = keep_docs.unsqueeze(1) * beams + torch.arange(beams, device=keep_docs.device)
        rows = rows.flatten()
        src_len = self.src_len.index_select(0, keep_docs)
        longest = int(src_len.max()) if src_len.numel() else 0
        return _Active(
            docs=[self.docs[i] for i in keep_docs.tolist()],
            src_len=src_len,
            memory=self.memory.index_select(keep_docs).resize_source(longest),
            state=self.state.index_select(rows).resize_source(longest),
            history=self.history.index_select(0, rows),
            steps=self.steps.index_select(0, keep_docs),
            beam_lp=self.beam_lp.index_select(0, keep_docs),
            max_lens=self.max_lens.index_select(0, keep_docs),
            floor=self.floor.index_select(0, keep_docs),
            count=self.count.index_select(0, keep_docs),
            bound=self.bound.index_select(0, keep_docs),
        )

    def extend(self, other: _Active) -> _Active:
        """These documents, then ``other``'s."""
        return _Active(
            docs=self.docs + other.docs,
            src_len=torch.cat([self.src_len, other.src_len]),
            memory=Memory.cat(self.memory, other.memory),
            state=DecoderState.cat(self.state, other.state),
            history=torch.cat([self.history, other.history]),
            steps=torch.cat([self.steps, other.steps]),
            beam_lp=torch.cat([self.beam_lp, other.beam_lp]),
            max_lens=torch.cat([self.max_lens, other.max_lens]),
            floor=torch.cat([self.floor, other.floor]),
            count=torch.cat([self.count, other.count]),
            bound=torch.cat([self.bound, other.bound]),
        )


@torch.inference_mode()
def beam_search(
    model: Seq2Seq,
    src: Tensor,
    src_len: Tensor,
    config: DecodeConfig,
    *,
    max_batch_tokens: int | None = None,
    frequent: Tensor | None = None,
    stats: SearchStats | None = None,
    words: WordPieces | None = None,
) -> list[list[Hypothesis]]:
    """Batched beam search; ``n_best`` hypotheses per document, best first.

    Args:
        src: (B, S) token ids, PAD after each end; src_len: (B,) lengths.
        max_batch_tokens: None searches all B documents at once. A budget instead admits
            documents in the given order while (active documents x longest active source) stays
            within it, and admits more as others finish (continuous batching). Sort documents
            longest first for the least padding. The results are the same either way.
        frequent: (F,) token ids ranked by frequency, needed when ``config.shortlist`` is set:
            each document may then emit only its source tokens and the first
            ``config.shortlist`` of these (and the special tokens).
        stats: counters to add this search's work to (see ``SearchStats``).
        words: the vocabulary's word starts, needed by ``whole_words`` and ``no_repeat_words``.
    """
    sources = [src[i, : int(n)] for i, n in enumerate(src_len.tolist())]
    return search_documents(
        model,
        sources,
        config,
        max_batch_tokens=max_batch_tokens,
        frequent=frequent,
        stats=stats,
        words=words,
    )


@torch.inference_mode()
def search_documents(
    model: Seq2Seq,
    sources: Sequence[Tensor],
    config: DecodeConfig,
    *,
    max_batch_tokens: int | None = None,
    frequent: Tensor | None = None,
    stats: SearchStats | None = None,
    words: WordPieces | None = None,
) -> list[list[Hypothesis]]:
    """Beam search over documents given as 1-D token tensors (S_i,), each at least 1 long.

    See ``beam_search`` for ``max_batch_tokens``, ``frequent`` and ``words``; this form needs no
    padded (B, S) tensor, so a long list of documents streams through a bounded active batch.
    """
    if not sources:
        return []
    shortlist = _shortlist(model, config, frequent)
    pending = deque(range(len(sources)))
    finished: list[list[Hypothesis]] = [[] for _ in sources]
    active: _Active | None = None
    while pending or active is not None:
        admitted = _admissible(pending, active, sources, max_batch_tokens)
        if admitted:
            active = _admit(model, active, admitted, sources, config, shortlist)
        assert active is not None, "the budget always admits at least one document"
        if stats is not None:
            stats.count(active.src_len, active.memory.outputs.size(1))
        active = _step(model, active, finished, config, words)
    return [sorted(f, key=lambda h: -h.score)[: config.n_best] for f in finished]


def _admissible(
    pending: deque[int], active: _Active | None, sources: Sequence[Tensor], budget: int | None
) -> list[int]:
    """Take from ``pending`` the documents that fit the budget now (at least one if idle).

    Refilling waits until a quarter of the active documents' rows are free, so the encoder runs
    on chunks rather than on one document per step.
    """
    count = 0 if active is None else len(active.docs)
    longest = 0 if active is None else int(active.src_len.max())
    taken: list[int] = []
    while pending:
        length = max(longest, sources[pending[0]].numel())
        fits = budget is None or (count + len(taken) + 1) * length <= budget
        if not fits and (count or taken):
            break
        taken.append(pending.popleft())
        longest = length
    if taken and count and len(taken) < max(1, count // 4) and pending:
        pending.extendleft(reversed(taken))
        return []
    return taken


def _admit(
    model: Seq2Seq,
    active: _Active | None,
    docs: list[int],
    sources: Sequence[Tensor],
    config: DecodeConfig,
    shortlist: Tensor | None,
) -> _Active:
    """Encode ``docs`` and add them, K fresh rows each, after the active documents."""
    beams = config.beam_size
    src_len = torch.tensor([sources[d].numel() for d in docs], device=sources[0].device)
    src = torch.nn.utils.rnn.pad_sequence(
        [sources[d] for d in docs], batch_first=True, padding_value=PAD_ID
    )
    memory, state = model.encode(src, src_len)
    max_lens = _max_lens(src_len, config).to(src.device)
    if shortlist is not None:
        allowed = shortlist.unsqueeze(0).repeat(len(docs), 1)  # (b, V)
        memory = memory.with_allowed(allowed.scatter_(1, src, True))
    beam_lp = torch.full((len(docs), beams), NEG_INF, device=src.device)
    beam_lp[:, 0] = 0.0  # all K rows start identical: expand only the first
    fresh = _Active(
        docs=list(docs),
        src_len=src_len,
        memory=memory,
        state=state.repeat_rows(beams),
        history=src.new_full((len(docs) * beams, _width(config)), PAD_ID),
        steps=torch.zeros_like(src_len),
        beam_lp=beam_lp,
        max_lens=max_lens,
        floor=torch.full((len(docs),), NEG_INF, device=src.device),
        count=torch.zeros_like(src_len),
        bound=torch.tensor(
            [config.penalty(int(m) + 1) for m in max_lens.tolist()], device=src.device
        ),
    )
    return fresh if active is None else active.extend(fresh)


def _shortlist(model: Seq2Seq, config: DecodeConfig, frequent: Tensor | None) -> Tensor | None:
    """(V,) bool: the ids every document may emit (specials + the most frequent), or None."""
    if not config.shortlist:
        return None
    if frequent is None:
        raise ValueError("DecodeConfig.shortlist needs the frequency-ranked ids: pass frequent=")
    mask = torch.zeros(model.config.vocab_size, dtype=torch.bool, device=frequent.device)
    mask[[PAD_ID, BOS_ID, EOS_ID, UNK_ID]] = True
    mask[frequent[: config.shortlist]] = True
    return mask


def _step(
    model: Seq2Seq,
    active: _Active,
    finished: list[list[Hypothesis]],
    config: DecodeConfig,
    words: WordPieces | None = None,
) -> _Active | None:
    """One beam step for every active document; returns those still active (None if none).

    Each row's best candidates are taken first, then the document's best among its K rows':
    the same choice as over all K x C at once, without building the (B, K x C) sums.
    """
    beams, batch = config.beam_size, len(active.docs)
    if active.memory.vocab is not None:
        active.memory = model.shortlisted(active.memory)
    memory = active.memory
    row_steps = active.steps.repeat_interleave(beams)  # (B * K,)
    last = torch.where(row_steps > 0, active.history[:, -1], BOS_ID)
    log_probs, state = model.decode_step(last, active.state, memory)  # (B * K, C)
    row_max = active.max_lens.repeat_interleave(beams)
    src = memory.src.repeat_interleave(beams, dim=0) if config.whole_words else None
    log_probs = constrain(
        log_probs, active.history, row_steps, row_max, config, memory.vocab, src, words
    )
    opennmt = config.compat == "opennmt"
    width = beams if opennmt else 2 * beams
    row_lp, row_col = row_topk(log_probs.float(), width)  # (B * K, w)
    per_row = row_lp.size(1)
    candidates = (active.beam_lp.view(-1, 1) + row_lp).view(batch, beams * per_row)
    top_lp, top_idx = candidates.topk(min(width, beams * per_row), dim=1)  # (B, width)
    parent = top_idx // per_row
    column = row_col.view(batch, beams * per_row).gather(1, top_idx)
    token = column if memory.vocab is None else memory.vocab[column]
    select = _select_opennmt if opennmt else _select
    sel_lp, sel_pos, done = select(active, finished, config, top_lp, parent, token)

    doc_base = torch.arange(batch, device=sel_pos.device).unsqueeze(1) * beams
    rows = (doc_base + parent.gather(1, sel_pos)).flatten()  # (B * K,)
    history = active.history.index_select(0, rows)[:, 1:]
    active.history = torch.cat([history, token.gather(1, sel_pos).view(-1, 1)], dim=1)
    active.state, active.beam_lp, active.steps = state.index_select(rows), sel_lp, active.steps + 1
    if done is None:
        done = _done(active, config)
    if bool(done.all()):
        return None
    if bool(done.any()):
        active = active.keep((~done).nonzero().flatten(), beams)
    return active


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


def _select(
    active: _Active,
    finished: list[list[Hypothesis]],
    config: DecodeConfig,
    top_lp: Tensor,
    parent: Tensor,
    token: Tensor,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """fairseq's rule over 2K candidates (B, 2K): EOS among the top K finish, the best K others
    go on. Returns the kept log-probs (B, K), their candidate positions (B, K), and None: the
    caller decides which documents are done once the beams have moved."""
    is_eos = (token == EOS_ID) & torch.isfinite(top_lp)
    finishing = is_eos.clone()
    finishing[:, config.beam_size :] = False
    _finish(active, finished, config, top_lp, parent, token, finishing)
    sel_lp, sel_pos = top_lp.masked_fill(is_eos, NEG_INF).topk(config.beam_size, dim=1)
    return sel_lp, sel_pos, None


def _select_opennmt(
    active: _Active,
    finished: list[list[Hypothesis]],
    config: DecodeConfig,
    top_lp: Tensor,
    parent: Tensor,
    token: Tensor,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """OpenNMT-py 3.5's rule over K candidates (B, K): EOS picks finish and their rows die; at
    ``max_len`` every pick finishes as it is (no EOS); a document is done when its best pick
    finished and it holds ``n_best`` hypotheses."""
    live = torch.isfinite(top_lp)
    is_eos = (token == EOS_ID) & live
    last_step = (active.steps + 1 >= active.max_lens).unsqueeze(1)  # (B, 1)
    finishing = is_eos | (last_step & live)
    _finish(active, finished, config, top_lp, parent, token, finishing)
    sel_lp = top_lp.masked_fill(finishing, NEG_INF)
    done = (is_eos[:, 0] & (active.count >= config.n_best)) | last_step.squeeze(1)
    done = done | torch.isinf(sel_lp).all(dim=1)
    positions = torch.arange(top_lp.size(1), device=top_lp.device).expand_as(top_lp)
    return sel_lp, positions, done


def _finish(
    active: _Active,
    finished: list[list[Hypothesis]],
    config: DecodeConfig,
    top_lp: Tensor,
    parent: Tensor,
    token: Tensor,
    finishing: Tensor,
) -> None:
    """Record the candidates ``finishing`` (B, C) as hypotheses; update each document's floor.

    A candidate ending in EOS keeps the tokens before it; any other (OpenNMT-py's rule at the
    maximum length) keeps its last token too.
    """
    beams, width = config.beam_size, active.history.size(1)
    # Penalty length: tokens + EOS; OpenNMT-py also counts BOS.
    extra = 2 if config.compat == "opennmt" else 1
    for b, j in finishing.nonzero().tolist():
        steps = int(active.steps[b])
        row = b * beams + int(parent[b, j])
        tokens = active.history[row, width - steps :].tolist()
        if int(token[b, j]) != EOS_ID:
            tokens.append(int(token[b, j]))
        log_prob = float(top_lp[b, j])
        doc = finished[active.docs[b]]
        doc.append(Hypothesis(tokens, log_prob / config.penalty(steps + extra), log_prob))
        active.count[b] += 1
        if len(doc) >= config.n_best:
            scores = sorted((h.score for h in doc), reverse=True)
            active.floor[b] = scores[config.n_best - 1]


def _done(active: _Active, config: DecodeConfig) -> Tensor:
    """(B,) bool: documents that can stop.

    A live hypothesis with cumulative log-prob ``lp <= 0`` ends with a log-prob at most ``lp`` and
    a length at most ``max_len + 1``; penalties grow with length, so its final score is at most
    ``lp / penalty(max_len + 1)``. When that bound cannot beat the n-th best finished score, no
    further step can change the result.
    """
    best_live = active.beam_lp.max(dim=1).values  # (B,)
    cannot_improve = (best_live / active.bound) <= active.floor
    no_live = torch.isinf(best_live)
    return (active.count >= config.beam_size) | cannot_improve | no_live


def _hypothesis(tokens: list[int], log_prob: float, config: DecodeConfig) -> Hypothesis:
    return Hypothesis(tokens, log_prob / config.penalty(len(tokens) + 1), log_prob)


def _width(config: DecodeConfig) -> int:
    """History columns kept: no hypothesis is longer than ``max_len`` tokens."""
    return config.max_len


def _max_lens(src_len: Tensor, config: DecodeConfig) -> Tensor:
    """(B,) per-document maximum summary length from the true (unpadded) source lengths."""
    return torch.tensor([config.max_len_for(int(n)) for n in src_len.tolist()], dtype=torch.long)
