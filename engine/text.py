"""The UMT5-XXL text encoder (encoder half only), with Wan's key names.

Our own small module rather than transformers' `UMT5EncoderModel` (checked with transformers
5.23 on the tiny encoder, bf16, Wan's key map): with `attn_implementation="eager"`
it matches this module bit for bit on the CPU, but its default SDPA path differs (1.4 % relative
L2) and its eager softmax runs in the activation dtype where the reference's runs in fp32. Keeping
Wan's key names, the checkpoint also loads without a key map.

Precision follows the reference exactly: weights and activations in bf16, no autocast; RMSNorm
statistics and the softmax in fp32; the tanh-GELU written out op by op (each op rounds to bf16).
"""
from __future__ import annotations

import gc
import html
import math
from pathlib import Path
from typing import Iterable

import ftfy
import regex
import torch
import torch.nn.functional as F
from torch import nn

from engine.arch import T5Params
from engine.embedding_cache import EmbeddingCache, embedding_key
from engine.fingerprint import file_fingerprint, folder_fingerprint
from engine.layout import T5_WEIGHTS, TOKENIZER_DIR
from engine.offload import LayerStreamer, stream_layers
from engine.pth_weights import load_strict, read_pth_state_dict
from engine.tokenizer import load_tokenizer

TEXT_LEN = 512  # every text is padded (and truncated) to this many tokens, EOS included
TEXT_BATCH = 3  # the reference encodes [prompt, video negative, audio negative] together
MAX_DISTANCE = 128  # relative-position buckets reach this far (fixed by the architecture)


def clean_text(text: str) -> str:
    """The tokenizer's `whitespace` cleaning: fix mojibake, unescape HTML twice, collapse every
    whitespace run to one space. `regex`'s `\\s` (Unicode White_Space) is the reference's."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip()


class RMSNorm(nn.Module):
    """T5 layer norm: no mean subtraction, statistics in fp32, scaled in the weight dtype."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return self.weight * x.type_as(self.weight)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    # Written out so that each step rounds in the activation dtype, as the reference does.
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def relative_buckets(length: int, num_buckets: int, device) -> torch.Tensor:
    """Bidirectional T5 bucket of (key position - query position), [length, length]."""
    rel = torch.arange(length, device=device)[None, :] - torch.arange(length, device=device)[:, None]
    half = num_buckets // 2
    bucket = (rel > 0).long() * half
    rel = rel.abs()
    exact = half // 2
    # log-spaced buckets beyond `exact`; the rel=0 entries give -inf here but take the exact branch
    far = exact + (torch.log(rel.float() / exact) / math.log(MAX_DISTANCE / exact) * (half - exact)).long()
    far = far.clamp(max=half - 1)
    return bucket + torch.where(rel < exact, rel, far)


class RelativeBias(nn.Module):
    def __init__(self, num_buckets: int, num_heads: int):
        super().__init__()
        self.num_buckets = num_buckets
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def forward(self, length: int) -> torch.Tensor:
        buckets = relative_buckets(length, self.num_buckets, self.embedding.weight.device)
        return self.embedding(buckets).permute(2, 0, 1).unsqueeze(0)  # [1, heads, Lq, Lk]


class Attention(nn.Module):
    def __init__(self, dim: int, dim_attn: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim_attn, bias=False)
        self.k = nn.Linear(dim, dim_attn, bias=False)
        self.v = nn.Linear(dim, dim_attn, bias=False)
        self.o = nn.Linear(dim_attn, dim, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pos_bias: torch.Tensor) -> torch.Tensor:
        b, n = x.size(0), self.num_heads
        q, k, v = (proj(x).view(b, x.size(1), n, -1) for proj in (self.q, self.k, self.v))
        bias = x.new_zeros(b, n, x.size(1), x.size(1)) + pos_bias
        bias.masked_fill_(mask.view(b, 1, 1, -1) == 0, torch.finfo(x.dtype).min)
        # T5 does not scale the logits
        logits = torch.einsum("binc,bjnc->bnij", q, k) + bias
        weights = F.softmax(logits.float(), dim=-1).type_as(logits)
        out = torch.einsum("bnij,bjnc->binc", weights, v)
        return self.o(out.reshape(b, x.size(1), -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, dim_ffn: int):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(dim, dim_ffn, bias=False))  # key `gate.0.weight`
        self.fc1 = nn.Linear(dim, dim_ffn, bias=False)
        self.fc2 = nn.Linear(dim_ffn, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x) * gelu_tanh(self.gate(x)))


class Block(nn.Module):
    def __init__(self, p: T5Params):
        super().__init__()
        self.norm1 = RMSNorm(p.dim)
        self.attn = Attention(p.dim, p.dim_attn, p.num_heads)
        self.norm2 = RMSNorm(p.dim)
        self.ffn = FeedForward(p.dim, p.dim_ffn)
        self.pos_embedding = None if p.shared_pos else RelativeBias(p.num_buckets, p.num_heads)

    def forward(self, x, mask, shared_bias):
        bias = shared_bias if self.pos_embedding is None else self.pos_embedding(x.size(1))
        x = x + self.attn(self.norm1(x), mask, bias)
        return x + self.ffn(self.norm2(x))


class T5Encoder(nn.Module):
    """Token ids [B, L] + mask [B, L] -> hidden states [B, L, dim] (dropout: eval only)."""

    def __init__(self, p: T5Params):
        super().__init__()
        self.token_embedding = nn.Embedding(p.vocab, p.dim)
        self.pos_embedding = RelativeBias(p.num_buckets, p.num_heads) if p.shared_pos else None
        self.blocks = nn.ModuleList(Block(p) for _ in range(p.num_layers))
        self.norm = RMSNorm(p.dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor,
                streamer: LayerStreamer | None = None) -> torch.Tensor:
        """streamer: the blocks' weights stream in (`stream_t5_encoder`); the token table may
        then sit in CPU memory, so the lookup happens where the table is."""
        table = self.token_embedding.weight
        x = self.token_embedding(ids.to(table.device)).to(mask.device)
        shared = None if self.pos_embedding is None else self.pos_embedding(x.size(1))
        for i, block in enumerate(self.blocks):
            if streamer is not None:
                streamer.before(i)
            x = block(x, mask, shared)
            if streamer is not None:
                streamer.after(i)
        return self.norm(x)


def load_t5_encoder(ckpt_dir: str | Path, params: T5Params, *, device="cpu",
                    dtype=torch.bfloat16) -> T5Encoder:
    root = Path(ckpt_dir)
    state = read_pth_state_dict(root, T5_WEIGHTS)
    with torch.device("meta"):
        model = T5Encoder(params)
    load_strict(model, state, root, T5_WEIGHTS)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def stream_t5_encoder(model: T5Encoder, device) -> LayerStreamer:
    """Put a CPU-held encoder on `device` with every block streamed through two slots and the
    token table (2 GB of the 11 GB at full size) left in CPU memory."""
    table = frozenset({id(model.token_embedding.weight)})
    return stream_layers(model, [[block] for block in model.blocks], len(model.blocks), device,
                         keep_on_cpu=table)


class TextEncoder:
    """Tokenizer + T5 encoder: texts -> one [n_tokens, dim] embedding per text (n <= 512)."""

    def __init__(self, ckpt_dir: str | Path, params: T5Params, *, device="cpu", dtype=torch.bfloat16,
                 stream: bool = False):
        self.device = torch.device(device)
        self.tokenizer = load_tokenizer(ckpt_dir, TEXT_LEN)
        self.streamer = None
        if stream:
            self.model = load_t5_encoder(ckpt_dir, params, device="cpu", dtype=dtype)
            self.streamer = stream_t5_encoder(self.model, self.device)
        else:
            self.model = load_t5_encoder(ckpt_dir, params, device=self.device, dtype=dtype)

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> list[torch.Tensor]:
        """Encode a batch; each result is trimmed to its real length (tokens + EOS), on CPU."""
        ids, mask = (torch.tensor(rows, device=self.device)
                     for rows in self.tokenizer([clean_text(t) for t in texts]))
        hidden = self.model(ids, mask, self.streamer)
        lengths = mask.gt(0).sum(dim=1).tolist()
        return [h[:n].cpu() for h, n in zip(hidden, lengths)]


class PromptEmbeddings:
    """Text embeddings for a render: each distinct (cleaned) text is encoded at most once and kept
    in the on-disk cache, so a second render of the same texts loads no encoder at all.

    The encoder is loaded only when some text is missing from the cache, and `release()` frees it
    before the fusion model needs the memory.
    """

    def __init__(self, ckpt_dir: str | Path, params: T5Params, cache: EmbeddingCache, *, device="cpu",
                 dtype=torch.bfloat16):
        self.ckpt_dir = Path(ckpt_dir)
        self.params = params
        self.cache = cache
        self.device = device
        self.dtype = dtype
        self.identity = "t5=" + file_fingerprint(self.ckpt_dir / T5_WEIGHTS) + ";tokenizer=" + \
            folder_fingerprint(self.ckpt_dir, [TOKENIZER_DIR])
        self.encoded_texts = 0  # texts this object has run through the encoder
        self._encoder: TextEncoder | None = None
        self._memo: dict[str, torch.Tensor] = {}

    def key(self, text: str) -> str:
        return embedding_key(clean_text(text), self.identity, str(self.dtype))

    def ensure(self, texts: Iterable[str], stream: bool = False) -> None:
        """Make every text's embedding available, encoding only those not cached. stream: the
        encoder, if it must be loaded, streams its blocks (it does not fit the device)."""
        missing: dict[str, str] = {}
        for text in texts:
            key = self.key(text)
            if key in self._memo or key in missing:
                continue
            cached = self.cache.get(key)
            if cached is None:
                missing[key] = text
            else:
                self._memo[key] = cached
        if not missing:
            return
        if self._encoder is None:
            self._encoder = TextEncoder(self.ckpt_dir, self.params, device=self.device, dtype=self.dtype,
                                        stream=stream)
        keys = list(missing)
        for start in range(0, len(keys), TEXT_BATCH):
            batch = keys[start:start + TEXT_BATCH]
            for key, embedding in zip(batch, self._encoder.encode([missing[k] for k in batch])):
                self.cache.put(key, embedding)
                self._memo[key] = embedding
            self.encoded_texts += len(batch)

    def get(self, text: str) -> torch.Tensor:
        """The [n, dim] embedding of `text` (encoding it now if it was never ensured)."""
        key = self.key(text)
        if key not in self._memo:
            self.ensure([text])
        return self._memo[key]

    def release(self) -> None:
        """Free the encoder (the embeddings themselves are small and stay)."""
        if self._encoder is None:
            return
        self._encoder = None
        gc.collect()  # 11 GB at full size: hand it back now, not at some later collection
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
