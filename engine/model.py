"""The Ovi fusion DiT: a video tower and an audio tower run layer by layer together.

`FusionModel.forward` is one denoiser call (one CFG branch). It is split into three public
steps so that a driver can run the passes differently (block swapping, both CFG branches inside
one layer loop):

    V, A, video_in, audio_in = model.prepare(video, audio, t, video_context, audio_context, clean)
    for i in range(model.num_layers):      # fusion layer i = video block i + audio block i
        V, A = model.layer(i, V, A, video_in, audio_in)
    video_out, audio_out = model.finish(V, A, video_in, audio_in)

A layer is the pure function `fusion_layer` of the two blocks; `compile_layers()` swaps in a
`torch.compile`d version of it.

`TowerInputs` holds what a tower's layers read besides its tokens; two CFG branches at the same
latents and timestep differ only in `context` (`dataclasses.replace(inputs, context=...)`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from engine.arch import DiTParams
from engine.fp8 import fp8_linears, hold_dequantized
from engine.layers import Block, Head, Linear, PatchEmbed3d, audio_stem, mlp
from engine.math import Rope, audio_rope, sinusoidal_embedding, video_rope


@dataclass(frozen=True)
class TowerInputs:
    e: torch.Tensor  # time embedding [1, S, D] (the head's modulation); [1, 1, D] when shared
    e0: torch.Tensor  # time projection [1, S, 6, D] (the blocks' modulation); [1, 1, 6, D] when shared
    rope: Rope  # per-token rotations: fp32 cos and sin [S, 1, d/2]
    grid: tuple[int, ...]  # (frames, rows, columns) of video tokens, or (length,) for audio
    context: torch.Tensor  # embedded text [1, text_len, D]


class Tower(nn.Module):
    """One backbone (Wan's WanModel shape): input/text/time embeddings, blocks, head."""

    def __init__(self, p: DiTParams):
        super().__init__()
        self.params = p
        if p.is_audio:
            self.patch_embedding = audio_stem(p)
        else:
            self.patch_embedding = PatchEmbed3d(p.in_dim, p.dim, kernel_size=p.patch_size,
                                                stride=p.patch_size)
        self.text_embedding = mlp(p.text_dim, p.dim, p.dim, nn.GELU(approximate="tanh"))
        self.time_embedding = mlp(p.freq_dim, p.dim, p.dim, nn.SiLU())
        self.time_projection = nn.Sequential(nn.SiLU(), Linear(p.dim, 6 * p.dim))
        self.blocks = nn.ModuleList(Block(p) for _ in range(p.num_layers))
        self.head = Head(p.dim, math.prod(p.patch_size) * p.out_dim, p.eps)
        self._rope: tuple[tuple, Rope] | None = None  # the last shot's tables, by (grid, device)

    def embed(self, latent: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Latent ([C, F, H, W] video or [L, C] audio) -> tokens [1, S, D] and the token grid."""
        x = self.patch_embedding(latent.unsqueeze(0))
        if self.params.is_audio:
            return x.contiguous(), (x.shape[1],)
        grid = tuple(x.shape[2:])
        # token-major from here on: every later op reads the residual stream contiguously
        return x.flatten(2).transpose(1, 2).contiguous(), grid

    def rope(self, grid: tuple[int, ...], device) -> Rope:
        """The rotation tables of a token grid, built once per shot (every step reuses them)."""
        key = (grid, torch.device(device))
        if self._rope is None or self._rope[0] != key:
            p = self.params
            tables = (audio_rope(grid[0], p.head_dim, p.temporal_rope_scaling_factor, device)
                      if p.is_audio else video_rope(grid, p.head_dim, device))
            self._rope = (key, tables)
        return self._rope[1]

    def time_embeddings(self, t: torch.Tensor, grid: tuple[int, ...],
                        first_frame_is_clean: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Timesteps -> (e, e0) in bf16: [1, 1, D] and [1, 1, 6, D] when every token shares the
        timestep (broadcast over the tokens, never materialised per token), else per token
        [1, S, D] and [1, S, 6, D].

        t has shape [1] (int64 or float32, as the scheduler made it). With a clean first frame
        (i2v, video only), the tokens of latent frame 0 get t = 0.
        """
        if first_frame_is_clean:
            t_tok = t[:, None].expand(1, math.prod(grid)).clone()
            t_tok[:, :math.prod(grid[1:])] = 0
        else:
            t_tok = t[:, None]
        emb = sinusoidal_embedding(self.params.freq_dim, t_tok.flatten())
        e = self.time_embedding(emb.unflatten(0, t_tok.shape).bfloat16())
        return e, self.time_projection(e).unflatten(2, (6, self.params.dim))

    def embed_text(self, context: torch.Tensor) -> torch.Tensor:
        """Trimmed text-encoder output [n, text_dim] -> zero-padded to text_len rows -> [1, text_len, D].

        The padded rows are kept (not masked): after the MLP they are a constant non-zero vector
        the text attention attends to, as in the reference.
        """
        n, text_len = context.shape[0], self.params.text_len
        if n > text_len:
            raise ValueError(f"text context has {n} rows; the model takes at most {text_len}")
        padded = torch.cat([context, context.new_zeros(text_len - n, context.shape[1])])
        return self.text_embedding(padded.unsqueeze(0))

    def prepare(self, latent, t, context, first_frame_is_clean=False):
        tokens, grid = self.embed(latent)
        e, e0 = self.time_embeddings(t.to(tokens.device), grid, first_frame_is_clean)
        return tokens, TowerInputs(e, e0, self.rope(grid, tokens.device), grid,
                                   self.embed_text(context.to(tokens.device)))

    def output(self, x: torch.Tensor, inputs: TowerInputs) -> torch.Tensor:
        """Head + unpatchify: [1, S, D] -> [C, F, H, W] (video) or [L, C] (audio), bf16."""
        x = self.head(x, inputs.e)[0]
        if self.params.is_audio:
            return x[: inputs.grid[0]].bfloat16()
        f, h, w = inputs.grid
        pf, ph, pw = self.params.patch_size
        c = self.params.out_dim
        x = x[: f * h * w].view(f, h, w, pf, ph, pw, c).permute(6, 0, 3, 1, 4, 2, 5)
        return x.reshape(c, f * pf, h * ph, w * pw).bfloat16()


def fusion_layer(vblock: Block, ablock: Block, V, A, video_in: TowerInputs, audio_in: TowerInputs,
                 backend: str):
    """One fusion layer: a video block and an audio block. Each tower's cross-attention sees the
    other tower's tokens as they are after that tower's self-attention in this layer."""
    amod = ablock.modulation(audio_in.e0)
    A = ablock.self_attention(A, amod, audio_in.rope, backend)
    vmod = vblock.modulation(video_in.e0)
    V = vblock.self_attention(V, vmod, video_in.rope, backend)
    A_mid = A
    A = ablock.cross_attention_ffn(A, amod, audio_in.context, V, audio_in.rope, video_in.rope, backend)
    V = vblock.cross_attention_ffn(V, vmod, video_in.context, A_mid, video_in.rope, audio_in.rope,
                                   backend)
    return V, A


class FusionModel(nn.Module):
    """Video tower + audio tower fused by cross-modal attention in every layer."""

    def __init__(self, video: DiTParams, audio: DiTParams, attention_backend: str = "sdpa"):
        super().__init__()
        if (video.dim, video.num_heads, video.num_layers) != (audio.dim, audio.num_heads, audio.num_layers):
            raise ValueError("video and audio towers need equal dim, num_heads and num_layers")
        self.video_model = Tower(video)
        self.audio_model = Tower(audio)
        self.attention_backend = attention_backend
        self._fusion_layer = fusion_layer
        self._held, self._held_layer = [], None  # fp8 layers whose expanded weights are held

    @property
    def num_layers(self) -> int:
        return len(self.video_model.blocks)

    def prepare(self, video, audio, t, video_context, audio_context, first_frame_is_clean=False):
        """Embed both latents, timesteps and texts: -> (V, A, video TowerInputs, audio TowerInputs)."""
        V, video_in = self.video_model.prepare(video, t, video_context, first_frame_is_clean)
        A, audio_in = self.audio_model.prepare(audio, t, audio_context)
        return V, A, video_in, audio_in

    def layer(self, i: int, V, A, video_in: TowerInputs, audio_in: TowerInputs):
        """Fusion layer i (see `fusion_layer`)."""
        self._hold_fp8(i)
        return self._fusion_layer(self.video_model.blocks[i], self.audio_model.blocks[i], V, A,
                                  video_in, audio_in, self.attention_backend)

    def compile_layers(self, backend: str = "inductor") -> None:
        """Run every fusion layer through one `torch.compile`d `fusion_layer`. The layers share
        a structure, so one graph serves them all (the blocks' weights are graph inputs, which
        also lets block swapping move them); a second text length makes that dimension dynamic
        instead of compiling again per prompt. backend: torch.compile's ("eager" captures the
        graph without generating code: what tests use)."""
        self._fusion_layer = torch.compile(fusion_layer, backend=backend)

    @property
    def compiled(self) -> bool:
        return self._fusion_layer is not fusion_layer

    def _hold_fp8(self, i: int | None) -> None:
        """Expand layer i's fp8 weights once for every call of it until another layer runs (the
        CFG branches of a step call each layer back to back); None releases them."""
        if i == self._held_layer:
            return
        hold = [] if i is None else (fp8_linears(self.video_model.blocks[i])
                                     + fp8_linears(self.audio_model.blocks[i]))
        hold_dequantized(hold, self._held)
        self._held, self._held_layer = hold, i

    def finish(self, V, A, video_in: TowerInputs, audio_in: TowerInputs):
        self._hold_fp8(None)
        return self.video_model.output(V, video_in), self.audio_model.output(A, audio_in)

    def forward(self, video, audio, t, video_context, audio_context,
                first_frame_is_clean: bool = False, slg_layer: int = 0):
        """One denoiser call: latents [C, F, H, W] and [L, C], t [1], contexts [n, text_dim] ->
        velocity predictions of the same shapes (bf16).

        slg_layer > 0 skips that fusion layer in both towers (skip-layer guidance, negative
        branch only); 0 or less skips nothing.
        """
        V, A, video_in, audio_in = self.prepare(video, audio, t, video_context, audio_context,
                                                first_frame_is_clean)
        for i in range(self.num_layers):
            if slg_layer > 0 and i == slg_layer:
                continue
            V, A = self.layer(i, V, A, video_in, audio_in)
        return self.finish(V, A, video_in, audio_in)
