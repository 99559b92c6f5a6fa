"""One decoding step: LSTM or GRU with input feeding, attention, output layer, optional copy
mixture."""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2s_model.attention import GlobalAttention
from s2s_model.config import ModelConfig
from s2s_model.rnn import make_rnn, rnn_name
from s2s_model.state import DecoderState, Memory
from s2s_model.tokenizer import PAD_ID, UNK_ID
from s2s_model.transfer import interleave

# Floor on mixed probabilities before the log when copying, so log never sees an exact zero.
MIN_PROB = 1e-12
# A quantized output layer's int8 rows and bias, unpacked once per layer (an unpack copies the
# whole layer: 23 ms for 16,000 x 512), then shortlisted as often as documents join a batch.
_UNPACKED: weakref.WeakKeyDictionary[nn.Module, tuple[Tensor, Tensor]] = weakref.WeakKeyDictionary()
_CELL_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class Decoder(nn.Module):
    def __init__(self, config: ModelConfig, embedding: nn.Embedding) -> None:
        super().__init__()
        self.config = config
        self.embedding = embedding
        self.dropout = nn.Dropout(config.dropout)
        # Registered as ``lstm`` or ``gru``; sequence-first, as a quantized one is called.
        inputs = config.embed_dim + config.hidden_size
        self.add_module(
            rnn_name(config), make_rnn(config, inputs, config.hidden_size, batch_first=False)
        )
        self.attention = GlobalAttention(config)
        self.generator = nn.Linear(config.hidden_size, config.vocab_size)
        if config.tie_embeddings:
            self.generator.weight = embedding.weight
        gate_inputs = 2 * config.hidden_size + config.embed_dim
        if config.copy_gate == "opennmt":
            gate_inputs = config.hidden_size
        self.copy_gate = nn.Linear(gate_inputs, 1) if config.copy else None

    @property
    def rnn(self) -> nn.Module:
        """The cells (``nn.LSTM`` or ``nn.GRU``, or their quantized forms)."""
        module: nn.Module = getattr(self, rnn_name(self.config))
        return module

    def step(
        self, prev_tokens: Tensor, state: DecoderState, memory: Memory
    ) -> tuple[Tensor, DecoderState, Tensor]:
        """Advance N = B * K rows by one token.

        Args:
            prev_tokens: (N,) previous tokens (BOS first); with ``extended_vocab`` an id
                V + p (a copied unknown word) is read as UNK.
            state: rows document-major, K = N // B consecutive rows per document.
            memory: B documents.

        Returns:
            log_probs (N, C), the new state, and the attention distribution (N, S); C = V, or
            with a shortlist the U columns of ``memory.vocab``; with ``extended_vocab`` S more
            columns follow, column V + p being the unknown word first at source position p.
        """
        if self.config.extended_vocab:
            prev_tokens = prev_tokens.masked_fill(prev_tokens >= self.config.vocab_size, UNK_ID)
        batch = memory.batch_size
        rows = prev_tokens.size(0)
        beams = rows // batch
        emb = self.dropout(self.embedding(prev_tokens))  # (N, E)
        lstm_in = torch.cat([emb, state.input_feed], dim=-1)  # (N, E + H)
        dec_out, h, c = self._rnn_step(lstm_in, state.h, state.c)  # (N, H), (L, N, H) x 2
        if self.attention.kind == "none":
            # The plain encoder-decoder: nothing read from the source; no copy, no coverage.
            attn_h = self.dropout(dec_out)
            align = dec_out.new_zeros(rows, memory.mask.size(1))
            return (
                self._output(attn_h, align, attn_h, dec_out, emb, memory),
                DecoderState(h, c, attn_h, None),
                align,
            )
        query = dec_out.view(batch, beams, -1)  # (B, K, H)
        coverage = None if state.coverage is None else state.coverage.view(batch, beams, -1)
        align, context = self._read_memory(query, coverage, memory)  # (B, K, S), (B, K, H)
        attn_h = self.attention.combine(context, query)  # (B, K, H)
        attn_h = self.dropout(attn_h.reshape(rows, -1))  # (N, H)
        align = align.reshape(rows, -1)  # (N, S)
        log_probs = self._output(attn_h, align, context.reshape(rows, -1), dec_out, emb, memory)
        new_coverage = None if state.coverage is None else state.coverage + align
        return log_probs, DecoderState(h, c, attn_h, new_coverage), align

    def _read_memory(
        self, query: Tensor, coverage: Tensor | None, memory: Memory
    ) -> tuple[Tensor, Tensor]:
        """Attention of B documents' queries (B, K, H) -> align (B, K, S), context (B, K, H).

        When ``memory.rows`` maps the documents into more stored rows (some documents left),
        the queries are spread to those rows, stale rows attend for nothing, and the documents'
        rows are taken back: far cheaper than copying the memory on every departure.
        """
        if memory.rows is None:
            return self.attention.read(query, memory.outputs, memory.keys, memory.mask, coverage)
        stored = memory.outputs.size(0)
        spread_query = query.new_zeros(stored, *query.shape[1:]).index_copy_(0, memory.rows, query)
        spread_coverage = None
        if coverage is not None:
            spread_coverage = coverage.new_zeros(stored, *coverage.shape[1:])
            spread_coverage.index_copy_(0, memory.rows, coverage)
        align, context = self.attention.read(
            spread_query, memory.outputs, memory.keys, memory.mask, spread_coverage
        )
        return align.index_select(0, memory.rows), context.index_select(0, memory.rows)

    def _rnn_step(
        self, x: Tensor, h: Tensor, c: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """One step of the stacked cells: x (N, I), h and c (L, N, H) -> output (N, H), h, c
        (c None for GRU cells).

        Cell by cell with ``torch.lstm_cell`` / ``torch.gru_cell`` on the module's own
        parameters: for a single step this measured ~20% faster on CPU than calling ``nn.LSTM``
        (2 layers, 256 rows). A quantized module keeps its own kernel.
        """
        rnn = self.rnn
        if type(rnn) not in (nn.LSTM, nn.GRU):
            if c is None:
                out, h_new = rnn(x.unsqueeze(0), h)
                return out[0], h_new, None
            out, (h_new, c_new) = rnn(x.unsqueeze(0), (h, c))
            return out[0], h_new, c_new
        hs, cs = [], []
        for layer in range(self.config.num_layers):
            if layer:
                x = F.dropout(x, self.config.dropout, self.training)  # between layers, as nn.LSTM
            weights = [getattr(rnn, f"{name}_l{layer}") for name in _CELL_WEIGHTS]
            if c is None:
                h_l = torch.gru_cell(x, h[layer], *weights)
            else:
                h_l, c_l = torch.lstm_cell(x, (h[layer], c[layer]), *weights)
                cs.append(c_l)
            hs.append(h_l)
            x = h_l
        return x, torch.stack(hs), torch.stack(cs) if cs else None

    def _output(
        self,
        attn_h: Tensor,
        align: Tensor,
        context: Tensor,
        dec_out: Tensor,
        emb: Tensor,
        memory: Memory,
    ) -> Tensor:
        """(N, H) attentional states -> (N, C) log-probabilities, mixed with copying if on.

        C = V, or with a shortlist C = U: only the ids ``memory.vocab`` are scored (column j is id
        ``vocab[j]``), each row is normalised over its own document's ids and the rest get -inf.
        """
        rows = attn_h.size(0)
        beams = rows // memory.batch_size
        logits = _allow(self._logits(attn_h, memory), memory)  # (N, C)
        if self.copy_gate is None:
            return F.log_softmax(logits, dim=-1)
        src = interleave(self._source_columns(memory), beams)  # (N, S)
        columns = logits.size(1)
        width = columns + (src.size(1) if self.config.extended_vocab else 0)
        if self.config.copy_gate == "opennmt":
            # OpenNMT-py's CopyGenerator: PAD out of the softmax, p_copy from attn_h alone.
            logits[:, PAD_ID] = float("-inf")
            p_copy = torch.sigmoid(self.copy_gate(attn_h))  # (N, 1)
            generated = torch.softmax(logits, dim=-1) * (1.0 - p_copy)
            probs = _widen(generated, width) + _copy_probs(generated, width, src, align * p_copy)
        else:
            p_gen = torch.sigmoid(self.copy_gate(torch.cat([context, dec_out, emb], dim=-1)))
            copy_probs = _copy_probs(logits, width, src, align)  # (N, width)
            generated = p_gen * torch.softmax(logits, dim=-1)
            probs = _widen(generated, width) + (1.0 - p_gen) * copy_probs
        # The floor keeps log finite (EOS stays possible when p_copy rounds to 1); ids a
        # document may not emit go back to -inf.
        floored = torch.log(probs.clamp_min(MIN_PROB))
        return _allow(_extended_log(floored, probs, columns), memory)

    def _logits(self, attn_h: Tensor, memory: Memory) -> Tensor:
        """(N, H) -> (N, V) output scores, or (N, U) for the ids ``memory.vocab`` only."""
        if memory.vocab is None:
            logits: Tensor = self.generator(attn_h)
            return logits
        output = memory.generator or self.shortlist_generator(memory.vocab)
        return output(attn_h)

    def shortlist_generator(self, vocab: Tensor) -> Callable[[Tensor], Tensor]:
        """The output layer for the ids ``vocab`` (U,) only: (N, H) -> (N, U) scores.

        Its rows are taken once here; a dynamically quantized layer stays int8 (its rows are
        packed again, and score exactly as the whole layer does).
        """
        generator = self.generator
        if isinstance(generator, nn.Linear):
            weight, bias = generator.weight[vocab], generator.bias[vocab]
            return lambda hidden: F.linear(hidden, weight, bias)
        if generator not in _UNPACKED:
            _UNPACKED[generator] = generator._weight_bias()
        weight, bias = _UNPACKED[generator]
        packed = torch.ops.quantized.linear_prepack(weight.index_select(0, vocab), bias[vocab])
        # reduce_range=True, as torch.ao's dynamic Linear calls it.
        return lambda hidden: torch.ops.quantized.linear_dynamic(hidden, packed, reduce_range=True)

    def _source_columns(self, memory: Memory) -> Tensor:
        """(B, S) source ids -> their columns in the output scores (ids, or shortlist places)."""
        if memory.vocab is None:
            return memory.src
        # A document's source ids are always in its shortlist, so each has a column in vocab.
        return torch.searchsorted(memory.vocab, memory.src.contiguous())


def _copy_probs(like: Tensor, width: int, src: Tensor, align: Tensor) -> Tensor:
    """(N, width) copy distribution: each row's attention ``align`` (N, S) summed onto the
    columns ``src`` (N, S) of its source tokens (ids, shortlist places, or extended ids V + p).

    Built in the wider of the dtypes autocast gave ``like`` (the logits) and ``align``: CUDA's
    policy runs softmax in fp32 while matrix products (the logits) are bf16, and an in-place
    ``scatter_add_`` refuses mixed dtypes. Where both are the same (fp32, or CPU bf16 autocast,
    whose softmax stays bf16) nothing changes.
    """
    dtype = torch.promote_types(like.dtype, align.dtype)
    zeros = like.new_zeros((like.size(0), width), dtype=dtype)
    return zeros.scatter_add_(1, src, align.to(dtype))


def _widen(probs: Tensor, width: int) -> Tensor:
    """(N, C) -> (N, width): zero columns appended for the extended vocabulary (if any)."""
    return probs if probs.size(1) == width else F.pad(probs, (0, width - probs.size(1)))


def _extended_log(log_probs: Tensor, probs: Tensor, columns: int) -> Tensor:
    """``log_probs`` (N, width) with the extended columns past ``columns`` taken unfloored from
    ``probs``: a source position that starts no unknown word gets no mass, hence -inf."""
    if log_probs.size(1) == columns:
        return log_probs
    log_probs[:, columns:] = torch.log(probs[:, columns:])
    return log_probs


def _allow(scores: Tensor, memory: Memory) -> Tensor:
    """(N, C) scores, in place: -inf where a row's document may not emit the column's id.

    Rows are document-major, K = N // B per document; ``memory.columns`` (B, C) says what each
    document may emit (None: everything).
    """
    if memory.columns is None:
        return scores
    grouped = scores.view(memory.batch_size, -1, scores.size(1))  # (B, K, C)
    grouped.masked_fill_(~memory.columns.unsqueeze(1), float("-inf"))
    return scores
