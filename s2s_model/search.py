"""Greedy and batched beam search over a (batch x beam) state.

Beam search follows fairseq's ``SequenceGenerator``: each step keeps the 2K best candidates of a
document so that hypotheses ending in EOS never starve the beam; EOS candidates ranked among the
top K are finished, and the top K others continue. A document stops when it has K finished
hypotheses (fairseq's rule, and what makes a beam of one greedy: a live hypothesis may still have
ended better, with a length penalty or without), when no live hypothesis can still beat its n-th
best finished one (an exact bound: this stop never changes the result), or when its maximum
length forces EOS. Stopped documents leave the batch, so the tensors shrink as the batch
finishes. With a token budget, waiting documents take the freed rows instead (continuous
batching), so the batch stays full to the end; a document's result does not depend on which
documents share its batch, so refilling never changes an answer.

Semantics (they are the contract tests check):
- a hypothesis ends when it emits EOS; at its document's maximum length EOS is forced, and that
  EOS's log-probability counts;
- the maximum length is per document: ``DecodeConfig.max_len_for(src_len)``; EOS is impossible
  before ``min_len`` tokens;
- PAD and BOS are never emitted; with ``ban_unk`` neither is UNK;
- ``score = log_prob / penalty(len)`` where ``len`` counts the tokens plus EOS; with
  ``coverage_beta`` (OpenNMT-py's ``-coverage_penalty summary``), minus
  ``DecodeConfig.coverage_penalty`` of the attention summed over the hypothesis's steps, EOS's
  step included. As in OpenNMT-py (without ``-stepwise_penalty``) the penalty ranks finished
  hypotheses only: which hypotheses the beam keeps going is decided by log-probabilities alone.
  It applies to any model with attention, with or without a coverage feature; greedy search
  has nothing to rank and ignores it;
- ``no_repeat_ngram_size = n`` forbids any n-gram from occurring twice in a hypothesis.

The search stays on the device: finished hypotheses are kept in device tensors (each document's
``n_best`` best so far) and read back once, together, after their documents leave; rules apply
with ``torch.where`` rather than host-side branches; lengths the host knows stay on the host. A
step reads one thing back, the (B,) flags of the documents that are done, plus a few reads when
documents are admitted (``tests/s2s_model/test_host_reads.py`` holds this to at most 2 per
step). None of
this changes a result: scores are computed in float64 on the device as the host would, and ties
between finished hypotheses still go to the one that finished first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from s2s_model.beam_step import NEG_INF, constrain, force_eos, row_topk
from s2s_model.config import DecodeConfig
from s2s_model.errors import S2SError
from s2s_model.model import Seq2Seq
from s2s_model.state import DecoderState, Memory
from s2s_model.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from s2s_model.transfer import interleave, upload
from s2s_model.wordpieces import WordPieces


class DecodeError(S2SError, ValueError):
    """Decoding settings this model cannot take; the message names the setting and the fix."""


# Rules that read ids as positions in the vocabulary: an extended id V + p has none.
_VOCABULARY_RULES = ("shortlist", "whole_words", "no_repeat_words")


def check_extended(model: Seq2Seq, config: DecodeConfig) -> None:
    """Refuse the rules that need every id in the vocabulary when ``model`` copies unknown
    words through extended ids."""
    if not model.config.extended_vocab:
        return
    for name in _VOCABULARY_RULES:
        if getattr(config, name):
            raise DecodeError(
                f"{name} does not combine with this model's extended vocabulary (copied unknown"
                f" words have no vocabulary entry): decode without {name}"
            )


@dataclass(frozen=True)
class Hypothesis:
    """A finished summary: ``tokens`` without BOS or EOS, ``score`` ranks, ``log_prob`` sums."""

    tokens: list[int]
    score: float
    log_prob: float


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
    check_extended(model, config)
    memory, state = model.encode(src, src_len)
    batch = src.size(0)
    max_lens = _max_lens(src_len.tolist(), config, src.device)
    history = src.new_full((batch, config.max_len), PAD_ID)
    total = torch.zeros(batch, device=src.device, dtype=torch.float32)
    ended = torch.zeros(batch, dtype=torch.bool, device=src.device)
    end_lp, end_len = torch.zeros_like(total), torch.zeros_like(max_lens)
    last = torch.full((batch,), BOS_ID, dtype=torch.long, device=src.device)
    picks: list[Tensor] = []
    step = 0
    while not bool(ended.all()):  # the one host read per step
        log_probs, state = model.decode_step(last, state, memory)
        steps = torch.full_like(max_lens, step)
        log_probs, forced, eos = constrain(
            log_probs, history, steps, max_lens, config, None, src, words
        )
        step_lp, picked = force_eos(*log_probs.max(dim=-1, keepdim=True), forced, eos)
        step_lp, last = step_lp.squeeze(1), picked.squeeze(1)
        total = total + step_lp.float()
        ending = (last == EOS_ID) & ~ended
        end_lp = torch.where(ending, total, end_lp)
        end_len = torch.where(ending, step, end_len)
        ended = ended | ending
        picks.append(last)
        history = torch.cat([history[:, 1:], last.unsqueeze(1)], dim=1)
        step += 1
    emitted = torch.stack(picks, dim=1) if picks else src.new_zeros(batch, 0)  # (B, T)
    rows = zip(emitted.tolist(), end_len.tolist(), end_lp.tolist(), strict=True)
    return [[_hypothesis(tokens[:length], lp, config)] for tokens, length, lp in rows]


@dataclass
class SearchStats:
    """Work counters a caller passes to a search and reads afterwards (summed over steps).

    The encoder reads packed sequences, so padding costs only where the decoder attends: at each
    step every active document attends over the longest active source.

    Attributes:
        source_tokens: real source positions attended, per document and step.
        padded_source_tokens: positions attended, padding included (documents x longest).
        steps: decoding steps run: calls to the decoder, each over the whole active batch.
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

    def count(self, src_lens: Sequence[int], longest: int) -> None:
        """Record one step (one decoder call) over documents with source lengths ``src_lens``."""
        self.source_tokens += sum(src_lens)
        self.padded_source_tokens += len(src_lens) * longest
        self.steps += 1


@dataclass
class _Active:
    """The documents being searched, K rows each, document-major; N = B * K rows.

    ``docs`` and ``src_lens`` live on the host (the host decides who joins and leaves); every
    tensor lives on the device. Each document keeps its ``n_best`` best finished hypotheses so
    far, best first, ties in the order they finished: all that its result needs.
    """

    docs: list[int]  # original index of each active document
    src_lens: list[int]  # source length of each
    memory: Memory
    state: DecoderState
    history: Tensor  # (N, W) right-aligned, PAD on the left
    steps: Tensor  # (B,) tokens emitted so far
    beam_lp: Tensor  # (B, K) cumulative log-probabilities
    max_lens: Tensor  # (B,)
    floor: Tensor  # (B,) n_best-th finished score, -inf until there are n_best
    count: Tensor  # (B,) finished hypotheses so far
    bound: Tensor  # (B,) penalty(max_len + 1): the largest a hypothesis can get
    kept_score: Tensor  # (B, n_best) float64 scores of the best finished, -inf in empty slots
    kept_lp: Tensor  # (B, n_best) their log-probabilities
    kept_len: Tensor  # (B, n_best) their token counts
    kept_tokens: Tensor  # (B, n_best, W + 1) their tokens, right-aligned
    attention: Tensor | None  # (N, S) attention summed over the steps (coverage_beta), else None

    def per_document(self) -> dict[str, Tensor]:
        """The tensors with one row per document, by field name."""
        return {name: getattr(self, name) for name in _PER_DOCUMENT}

    def keep(self, keep: list[int], beams: int) -> _Active:
        """Only the documents at positions ``keep``; the source axis shrinks to the longest."""
        keep_docs = upload(keep, self.history.device)
        rows = keep_docs.unsqueeze(1) * beams + torch.arange(beams, device=keep_docs.device)
        rows = rows.flatten()
        src_lens = [self.src_lens[i] for i in keep]
        longest = max(src_lens, default=0)
        fields = {k: v.index_select(0, keep_docs) for k, v in self.per_document().items()}
        return replace(
            self,
            docs=[self.docs[i] for i in keep],
            src_lens=src_lens,
            memory=self.memory.index_select(keep_docs).resize_source(longest),
            state=self.state.index_select(rows).resize_source(longest),
            history=self.history.index_select(0, rows),
            attention=_attention_rows(self.attention, rows, longest),
            **fields,
        )

    def extend(self, other: _Active) -> _Active:
        """These documents, then ``other``'s."""
        theirs = other.per_document()
        fields = {k: torch.cat([v, theirs[k]]) for k, v in self.per_document().items()}
        return replace(
            self,
            docs=self.docs + other.docs,
            src_lens=self.src_lens + other.src_lens,
            memory=Memory.cat(self.memory, other.memory),
            state=DecoderState.cat(self.state, other.state),
            history=torch.cat([self.history, other.history]),
            attention=_attention_cat(self.attention, other.attention),
            **fields,
        )


def _attention_rows(attention: Tensor | None, rows: Tensor, length: int) -> Tensor | None:
    """The attention sums (N, S) of ``rows``, the source axis cut to ``length``: the positions
    past every kept document's end were never attended."""
    return None if attention is None else attention.index_select(0, rows)[:, :length]


def _attention_cat(first: Tensor | None, second: Tensor | None) -> Tensor | None:
    """Rows of ``first`` then ``second`` (N1, S1), (N2, S2): the shorter zero-padded."""
    if first is None or second is None:
        return None
    length = max(first.size(1), second.size(1))
    return torch.cat([F.pad(a, (0, length - a.size(1))) for a in (first, second)])


def _unpack(row: list[float], n: int) -> list[Hypothesis]:
    """One document's packed results: [count, n scores, n log-probs, n lengths, n x (W + 1)
    right-aligned tokens] -> its hypotheses, best first."""
    width = (len(row) - 1 - 3 * n) // n
    hypotheses = []
    for i in range(min(int(row[0]), n)):
        end = 1 + 3 * n + (i + 1) * width
        tokens = [int(t) for t in row[end - int(row[1 + 2 * n + i]) : end]]
        hypotheses.append(Hypothesis(tokens, row[1 + i], row[1 + n + i]))
    return hypotheses


_PER_DOCUMENT = (
    "steps",
    "beam_lp",
    "max_lens",
    "floor",
    "count",
    "bound",
    "kept_score",
    "kept_lp",
    "kept_len",
    "kept_tokens",
)


class _Results:
    """Finished documents' hypotheses: gathered on the device as documents leave, read back
    to the host in one transfer at the end (or every ``flush_every`` documents)."""

    def __init__(self, documents: int, config: DecodeConfig, flush_every: int = 4096) -> None:
        self.hypotheses: list[list[Hypothesis]] = [[] for _ in range(documents)]
        self.n_best = config.n_best
        self.flush_every = flush_every
        self._docs: list[int] = []
        self._packed: list[Tensor] = []

    def leave(self, active: _Active, positions: list[int]) -> None:
        """Take the results of the active documents at ``positions`` (no host read)."""
        index = upload(positions, active.history.device)
        fields = (
            active.count.unsqueeze(1),
            active.kept_score,
            active.kept_lp,
            active.kept_len,
            active.kept_tokens.flatten(1),
        )
        # float64 holds every field exactly: ids and counts are small integers, log-probs fp32.
        packed = torch.cat([f.index_select(0, index).double() for f in fields], dim=1)
        self._docs += [active.docs[p] for p in positions]
        self._packed.append(packed)
        if len(self._docs) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Read the gathered results back (one host read) and make them ``Hypothesis`` lists."""
        if not self._docs:
            return
        rows = torch.cat(self._packed).tolist()
        for doc, row in zip(self._docs, rows, strict=True):
            self.hypotheses[doc] = _unpack(row, self.n_best)
        self._docs, self._packed = [], []


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
        src: (B, S) token ids, PAD after each end; src_len: (B,) lengths. With a model's
            ``extended_vocab``, an id V + p is the unknown word first at position p of its
            document: hypotheses may hold it (copied).
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
    check_extended(model, config)
    shortlist = _shortlist(model, config, frequent)
    rules = _Rules.of(config, sources[0].device, words)
    pending = deque(range(len(sources)))
    results = _Results(len(sources), config)
    active: _Active | None = None
    while pending or active is not None:
        admitted = _admissible(pending, active, sources, max_batch_tokens)
        if admitted:
            active = _admit(model, active, admitted, sources, rules, shortlist)
        assert active is not None, "the budget always admits at least one document"
        if stats is not None:
            stats.count(active.src_lens, active.memory.outputs.size(1))
        done = _step(model, active, rules)
        active = _leave(active, done.tolist(), results, config.beam_size)  # the step's one read
    results.flush()
    return results.hypotheses


@dataclass(frozen=True)
class _Rules:
    """A search's settings and what follows from them, made once per search.

    Attributes:
        penalties: (W + 3,) float64, ``config.penalty(i)`` at index i, on the device: scores
            are computed there exactly as the host would (float64 division).
        extra: what the penalty length adds to the tokens: EOS, and for OpenNMT-py BOS too.
        words: the vocabulary's word starts (for ``whole_words`` and ``no_repeat_words``).
    """

    config: DecodeConfig
    penalties: Tensor
    extra: int
    words: WordPieces | None = None

    @staticmethod
    def of(config: DecodeConfig, device: torch.device, words: WordPieces | None) -> _Rules:
        lengths = range(config.max_len + 3)
        penalties = torch.tensor([config.penalty(i) for i in lengths], dtype=torch.float64)
        extra = 2 if config.compat == "opennmt" else 1
        return _Rules(config, upload(penalties, device), extra, words)


def _admissible(
    pending: deque[int], active: _Active | None, sources: Sequence[Tensor], budget: int | None
) -> list[int]:
    """Take from ``pending`` the documents that fit the budget now (at least one if idle).

    Refilling waits until a quarter of the active documents' rows are free, so the encoder runs
    on chunks rather than on one document per step.
    """
    count = 0 if active is None else len(active.docs)
    longest = 0 if active is None else max(active.src_lens)
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
    rules: _Rules,
    shortlist: Tensor | None,
) -> _Active:
    """Encode ``docs`` and add them, K fresh rows each, after the active documents.

    Source lengths are known on the host: they go to the encoder as a host tensor, and the
    per-document limits are computed on the host and uploaded, so admitting reads nothing back.
    """
    config, beams, width = rules.config, rules.config.beam_size, rules.config.max_len
    src_lens = [sources[d].numel() for d in docs]
    device = sources[0].device
    src = torch.nn.utils.rnn.pad_sequence(
        [sources[d] for d in docs], batch_first=True, padding_value=PAD_ID
    )
    memory, state = model.encode(src, torch.tensor(src_lens))
    if shortlist is not None:
        allowed = shortlist.unsqueeze(0).repeat(len(docs), 1)  # (b, V)
        memory = memory.with_allowed(allowed.scatter_(1, src, True))
    b, n = len(docs), config.n_best
    max_lens = [config.max_len_for(length) for length in src_lens]
    beam_lp = torch.full((b, beams), NEG_INF, device=device)
    beam_lp[:, 0] = 0.0  # all K rows start identical: expand only the first
    fresh = _Active(
        docs=list(docs),
        src_lens=src_lens,
        memory=memory,
        state=state.repeat_rows(beams),
        history=src.new_full((b * beams, width), PAD_ID),
        steps=torch.zeros(b, dtype=torch.long, device=device),
        beam_lp=beam_lp,
        max_lens=upload(max_lens, device),
        floor=torch.full((b,), NEG_INF, device=device),
        count=torch.zeros(b, dtype=torch.long, device=device),
        bound=upload([config.penalty(m + 1) for m in max_lens], device),
        kept_score=torch.full((b, n), NEG_INF, dtype=torch.float64, device=device),
        kept_lp=torch.zeros((b, n), device=device),
        kept_len=torch.zeros((b, n), dtype=torch.long, device=device),
        kept_tokens=src.new_full((b, n, width + 1), PAD_ID),
        attention=(
            torch.zeros(b * beams, memory.outputs.size(1), device=device)
            if config.coverage_beta
            else None
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


def _step(model: Seq2Seq, active: _Active, rules: _Rules) -> Tensor:
    """One beam step for every active document, in place; returns (B,) bool: who is done.

    Each row's best candidates are taken first, then the document's best among its K rows':
    the same choice as over all K x C at once, without building the (B, K x C) sums.
    """
    config = rules.config
    beams, batch = config.beam_size, len(active.docs)
    if active.memory.vocab is not None:
        active.memory = model.shortlisted(active.memory)
    memory = active.memory
    row_steps = interleave(active.steps, beams)  # (B * K,)
    last = torch.where(row_steps > 0, active.history[:, -1], BOS_ID)
    log_probs, state, attention = _decode(model, last, active, memory)  # (B * K, C)
    # (B, K) float64: what each row's hypothesis loses if it finishes now (None: no penalty)
    coverage = None
    if attention is not None:
        coverage = config.coverage_penalty(attention.double()).view(batch, beams)
    row_max = interleave(active.max_lens, beams)
    src = interleave(memory.src, beams) if config.whole_words else None
    log_probs, forced, eos = constrain(
        log_probs, active.history, row_steps, row_max, config, memory.vocab, src, rules.words
    )
    opennmt = config.compat == "opennmt"
    width = beams if opennmt else 2 * beams
    row_lp, row_col = force_eos(*row_topk(log_probs.float(), width), forced, eos)  # (B * K, w)
    per_row = row_lp.size(1)
    candidates = (active.beam_lp.view(-1, 1) + row_lp).view(batch, beams * per_row)
    top_lp, top_idx = candidates.topk(min(width, beams * per_row), dim=1)  # (B, width)
    parent = top_idx // per_row
    column = row_col.view(batch, beams * per_row).gather(1, top_idx)
    token = column if memory.vocab is None else memory.vocab[column]
    select = _select_opennmt if opennmt else _select
    sel_lp, sel_pos, done = select(active, rules, top_lp, parent, token, coverage)

    doc_base = torch.arange(batch, device=sel_pos.device).unsqueeze(1) * beams
    rows = (doc_base + parent.gather(1, sel_pos)).flatten()  # (B * K,)
    history = active.history.index_select(0, rows)[:, 1:]
    active.history = torch.cat([history, token.gather(1, sel_pos).view(-1, 1)], dim=1)
    active.state, active.beam_lp, active.steps = state.index_select(rows), sel_lp, active.steps + 1
    if attention is not None:
        active.attention = attention.index_select(0, rows)
    return _done(active, config) if done is None else done


def _decode(
    model: Seq2Seq, last: Tensor, active: _Active, memory: Memory
) -> tuple[Tensor, DecoderState, Tensor | None]:
    """One decoder step over the active rows: log-probs (N, C), the new state, and with the
    coverage penalty the attention sums (N, S) after this step (else None)."""
    if active.attention is None:
        log_probs, state = model.decode_step(last, active.state, memory)
        return log_probs, state, None
    log_probs, state, align = model.decode_step_attending(last, active.state, memory)
    return log_probs, state, active.attention + align.float()


def _leave(active: _Active, done: list[bool], results: _Results, beams: int) -> _Active | None:
    """The documents ``done`` hand their results over and leave; the rest (None if none)."""
    if not any(done):
        return active
    results.leave(active, [i for i, d in enumerate(done) if d])
    if all(done):
        return None
    return active.keep([i for i, d in enumerate(done) if not d], beams)


def _select(
    active: _Active,
    rules: _Rules,
    top_lp: Tensor,
    parent: Tensor,
    token: Tensor,
    coverage: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """fairseq's rule over 2K candidates (B, 2K): EOS among the top K finish, the best K others
    go on. Returns the kept log-probs (B, K), their candidate positions (B, K), and None: the
    caller decides which documents are done once the beams have moved."""
    beams = rules.config.beam_size
    is_eos = (token == EOS_ID) & torch.isfinite(top_lp)
    firsts = (top_lp[:, :beams], parent[:, :beams], token[:, :beams], is_eos[:, :beams])
    _finish(active, rules, *firsts, coverage)
    sel_lp, sel_pos = top_lp.masked_fill(is_eos, NEG_INF).topk(beams, dim=1)
    return sel_lp, sel_pos, None


def _select_opennmt(
    active: _Active,
    rules: _Rules,
    top_lp: Tensor,
    parent: Tensor,
    token: Tensor,
    coverage: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """OpenNMT-py 3.5's rule over K candidates (B, K): EOS picks finish and their rows die; at
    ``max_len`` every pick finishes as it is (no EOS); a document is done when its best pick
    finished and it holds ``n_best`` hypotheses."""
    live = torch.isfinite(top_lp)
    is_eos = (token == EOS_ID) & live
    last_step = (active.steps + 1 >= active.max_lens).unsqueeze(1)  # (B, 1)
    finishing = is_eos | (last_step & live)
    _finish(active, rules, top_lp, parent, token, finishing, coverage)
    sel_lp = top_lp.masked_fill(finishing, NEG_INF)
    done = (is_eos[:, 0] & (active.count >= rules.config.n_best)) | last_step.squeeze(1)
    done = done | torch.isinf(sel_lp).all(dim=1)
    positions = torch.arange(top_lp.size(1), device=top_lp.device).expand_as(top_lp)
    return sel_lp, positions, done


def _finish(
    active: _Active,
    rules: _Rules,
    top_lp: Tensor,
    parent: Tensor,
    token: Tensor,
    finishing: Tensor,
    coverage: Tensor | None,
) -> None:
    """Merge the candidates ``finishing`` (B, C) into each document's best ``n_best`` finished
    hypotheses, on the device; update the counts and floors. ``coverage`` (B, K) float64 is the
    coverage penalty of each parent row (None: no penalty).

    A candidate ending in EOS keeps the tokens before it; any other (OpenNMT-py's rule at the
    maximum length) keeps its last token too. The merge is a stable sort of the kept ones, then
    the new ones in candidate order: the order in which hypotheses finish breaks ties.
    """
    batch, picks = finishing.shape
    n, beams, width = rules.config.n_best, rules.config.beam_size, active.history.size(1)
    rows = torch.arange(batch, device=parent.device).unsqueeze(1) * beams + parent  # (B, C)
    history = active.history.index_select(0, rows.flatten()).view(batch, picks, width)
    is_eos = (token == EOS_ID).unsqueeze(2)  # (B, C, 1)
    before = torch.cat([torch.full_like(history[:, :, :1], PAD_ID), history], dim=2)
    tokens = torch.where(is_eos, before, torch.cat([history, token.unsqueeze(2)], dim=2))
    length = active.steps.unsqueeze(1) + (~is_eos.squeeze(2)).long()  # (B, C)
    penalty = rules.penalties[active.steps + rules.extra].unsqueeze(1)  # (B, 1) float64
    score = top_lp.double() / penalty
    if coverage is not None:
        score = score - coverage.gather(1, parent)
    score = torch.where(finishing, score, NEG_INF)  # (B, C)
    merged = torch.cat([active.kept_score, score], dim=1)  # (B, n + C)
    order = merged.sort(dim=1, descending=True, stable=True).indices[:, :n]  # (B, n)
    active.kept_score = merged.gather(1, order)
    active.kept_lp = torch.cat([active.kept_lp, top_lp], dim=1).gather(1, order)
    active.kept_len = torch.cat([active.kept_len, length], dim=1).gather(1, order)
    kept_tokens = torch.cat([active.kept_tokens, tokens], dim=1)  # (B, n + C, W + 1)
    active.kept_tokens = kept_tokens.gather(1, order.unsqueeze(2).expand(-1, -1, width + 1))
    active.count = active.count + finishing.sum(dim=1)
    nth = active.kept_score[:, n - 1].float()
    active.floor = torch.where(active.count >= n, nth, active.floor)


def _done(active: _Active, config: DecodeConfig) -> Tensor:
    """(B,) bool: documents that can stop.

    A document with ``beam_size`` finished hypotheses stops (fairseq's rule: part of what the
    search returns, not a shortcut; ``tests/s2s_model/test_search.py`` shows a live hypothesis
    it drops that would have ended better). The other stop is exact: a live hypothesis with
    cumulative log-prob ``lp <= 0`` ends with a log-prob at most ``lp`` and a length at most
    ``max_len + 1``; penalties grow with length (alpha >= 0), so its final score is at most
    ``lp / penalty(max_len + 1)`` (a coverage penalty only lowers it). When that bound cannot
    beat the n-th best finished score, no further step can change the result.
    """
    best_live = active.beam_lp.max(dim=1).values  # (B,)
    cannot_improve = (best_live / active.bound) <= active.floor
    no_live = torch.isinf(best_live)
    return (active.count >= config.beam_size) | cannot_improve | no_live


def _hypothesis(tokens: list[int], log_prob: float, config: DecodeConfig) -> Hypothesis:
    return Hypothesis(tokens, log_prob / config.penalty(len(tokens) + 1), log_prob)


def _max_lens(src_lens: list[int], config: DecodeConfig, device: torch.device) -> Tensor:
    """(B,) per-document maximum summary length from the true (unpadded) source lengths."""
    return upload([config.max_len_for(n) for n in src_lens], device)
