"""Seq2Seq: encoder, bridge, attention decoder; the API that search, training and tests use."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from s2s_model.bridge import Bridge
from s2s_model.config import ModelConfig
from s2s_model.decoder import Decoder
from s2s_model.encoder import Encoder, lengths_mask
from s2s_model.state import DecoderState, Memory
from s2s_model.tokenizer import BOS_ID, PAD_ID, UNK_ID
from s2s_model.transfer import upload


class TeacherForced(NamedTuple):
    """log_probs (B, T, V); coverage_loss (B, T) = sum_i min(attn_i, coverage_i), zero if off."""

    log_probs: Tensor
    coverage_loss: Tensor


class Seq2Seq(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=PAD_ID)
        self.encoder = Encoder(config, self.embedding)
        self.bridge = Bridge(config) if config.bridge else None
        target_embedding = (
            self.embedding
            if config.share_embeddings
            else nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=PAD_ID)
        )
        self.decoder = Decoder(config, target_embedding)

    def encode(self, src: Tensor, src_len: Tensor) -> tuple[Memory, DecoderState]:
        """Encode B documents.

        Args:
            src: (B, S) token ids; src_len: (B,) lengths, each at least 1. An id V + p (V the
                vocabulary size) is a word outside the vocabulary first seen at position p: the
                encoder reads it as UNK, and with ``extended_vocab`` the decoder can copy it.

        Returns:
            the memory of the B documents (S trimmed to max(src_len)) and the decoder's initial
            state for B rows (one per document; repeat it for a beam).
        """
        if bool((src_len < 1).any()):
            raise ValueError("every source needs at least one token")
        known = src.masked_fill(src >= self.config.vocab_size, UNK_ID)  # (B, S)
        outputs, h, c = self.encoder(known, src_len)  # (B, S', H), (L, B, H)
        if self.bridge is not None:
            h, c = self.bridge(h, c)
        max_len = outputs.size(1)
        memory = Memory(
            outputs=outputs,
            keys=self.decoder.attention.keys(outputs),
            mask=upload(lengths_mask(src_len, max_len), outputs.device),
            src=(src if self.config.extended_vocab else known)[:, :max_len],
        )
        batch = src.size(0)
        coverage = outputs.new_zeros(batch, max_len) if self.config.coverage else None
        state = DecoderState(h, c, outputs.new_zeros(batch, self.config.hidden_size), coverage)
        return memory, state

    def decode_step(
        self, prev_tokens: Tensor, state: DecoderState, memory: Memory
    ) -> tuple[Tensor, DecoderState]:
        """prev_tokens (N,), N = B * K rows document-major -> (log_probs (N, C), new state).

        C = V, or with a shortlist (``memory.vocab``, U ids) C = U: column j is id ``vocab[j]``.
        """
        log_probs, new_state, _ = self.decoder.step(prev_tokens, state, memory)
        return log_probs, new_state

    def decode_step_attending(
        self, prev_tokens: Tensor, state: DecoderState, memory: Memory
    ) -> tuple[Tensor, DecoderState, Tensor]:
        """``decode_step`` that also returns the step's attention distribution (N, S) (the one
        the copy distribution reuses): what the coverage penalty sums."""
        return self.decoder.step(prev_tokens, state, memory)

    def shortlisted(self, memory: Memory) -> Memory:
        """``memory`` with the output layer restricted to its shortlist, so that each decoding
        step does not take the rows again (a no-op without a shortlist or when already taken)."""
        if memory.vocab is None or memory.generator is not None:
            return memory
        return memory.with_generator(self.decoder.shortlist_generator(memory.vocab))

    def teacher_forced(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> TeacherForced:
        """Score the target prefix ``tgt_in`` (B, T) (BOS first) token by token."""
        memory, state = self.encode(src, src_len)
        steps_log_probs, steps_cov = [], []
        for t in range(tgt_in.size(1)):
            coverage_before = state.coverage
            log_probs, state, align = self.decoder.step(tgt_in[:, t], state, memory)
            steps_log_probs.append(log_probs)
            if coverage_before is None:
                steps_cov.append(log_probs.new_zeros(log_probs.size(0)))
            else:
                steps_cov.append(torch.minimum(align, coverage_before).sum(-1))
        return TeacherForced(torch.stack(steps_log_probs, 1), torch.stack(steps_cov, 1))

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
        """(B, S), (B,), (B, T) -> (B, T, V) normalised log-probabilities."""
        return self.teacher_forced(src, src_len, tgt_in).log_probs


def shift_right(tgt: Tensor) -> Tensor:
    """(B, T) targets ending in EOS (PAD after) -> decoder inputs starting with BOS."""
    bos = torch.full_like(tgt[:, :1], BOS_ID)
    return torch.cat([bos, tgt[:, :-1]], dim=1)
