"""engine.sampling's wiring on a stand-in fusion model whose layers add their text context to the
latents, so every prediction is a number worked out by hand: which context reaches which tower
in which branch, which layer skip-layer guidance skips, which scale guides which tower, the
first frame of i2v, and the order of scheduler steps and progress calls."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

import engine.sampling as sampling
from engine.sampling import SamplerSettings, SamplingStats, denoise, guide, make_noise

LAYERS = 4
VIDEO_SHAPE, AUDIO_SHAPE = (2, 3, 1, 1), (5, 2)  # [C, F, h, w] and [L, C]


@dataclass(frozen=True)
class Inputs:  # what the sampler needs of engine.model.TowerInputs: a replaceable context
    context: torch.Tensor


class Tower:
    def __init__(self, factor: float):
        self.factor = factor

    def embed_text(self, context):  # [n, D] -> [1, n, D]; the audio tower's is 10x: swaps show
        return self.factor * context[None].float()


class AddsContext(nn.Module):
    """Fusion layer i adds the branch's video context to V and its audio context to A; the
    prediction of a tower is what its latent accumulated over the layers it ran."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # where the model lives
        self.num_layers = LAYERS
        self.video_model, self.audio_model = Tower(1.0), Tower(10.0)
        self.calls: list[tuple[int, list[float]]] = []  # (layer, video context of each row)
        self.prepared: list[tuple[torch.Tensor, torch.Tensor, bool]] = []
        self.audio_in: list[torch.Tensor] = []
        self.finished: list[float] = []  # the video context of each branch finished

    def prepare(self, video, audio, t, video_context, audio_context, first_frame_is_clean=False):
        self.prepared.append((video.clone(), t.clone(), first_frame_is_clean))
        self.audio_in.append(audio.clone())
        return (torch.zeros(1, 1, 1), torch.zeros(1, 1, 1),
                Inputs(self.video_model.embed_text(video_context)),
                Inputs(self.audio_model.embed_text(audio_context)))

    def layer(self, i, V, A, video_in, audio_in):
        self.calls.append((i, video_in.context[:, 0, 0].tolist()))
        return V + video_in.context[:, :1, :1], A + audio_in.context[:, :1, :1]

    def finish(self, V, A, video_in, audio_in):  # a branch's rows summed: one row per branch
        self.finished.append(float(video_in.context[0, 0, 0]))
        return V.sum().expand(VIDEO_SHAPE).bfloat16(), A.sum().expand(AUDIO_SHAPE).bfloat16()


class Recorder:
    """A scheduler that records the guided prediction and moves the sample by one."""

    def __init__(self, log):
        self.timesteps, self.log = torch.tensor([999, 500]), log

    def step(self, model_output, sample):
        self.log.append(model_output[0].flatten()[0].item())
        return sample + 1


@pytest.fixture
def recorded(monkeypatch):
    logs: list[list[float]] = []

    def make(solver, steps, shift, device):
        assert (solver, steps, shift) == ("unipc", 2, 5.0)
        logs.append([])
        return Recorder(logs[-1])

    monkeypatch.setattr(sampling, "make_scheduler", make)
    return logs


def run(model, **settings):
    ones = torch.ones(3, 4)
    return denoise(model, settings=SamplerSettings(**{"steps": 2, "slg_layer": 2, **settings}),
                   text=ones, video_negative=2 * ones, audio_negative=3 * ones,
                   video_shape=VIDEO_SHAPE, audio_shape=AUDIO_SHAPE)


@pytest.mark.parametrize("batched", [False, True])
def test_each_tower_is_guided_by_its_own_negative_and_scale_with_the_slg_layer_skipped(recorded, batched):
    # positive: 4 layers of context 1 (video) and 10 (audio) -> 4 and 40; negative: video 2,
    # audio 10 x 3, layer 2 skipped -> 6 and 90; guided: 6 + 4 (4 - 6) = -2, 90 + 3 (40 - 90) = -60
    model = AddsContext()
    run(model, cfg_batch=batched)
    video_log, audio_log = recorded
    assert video_log == [-2.0, -2.0] and audio_log == [-60.0, -60.0]
    layers = [i for i, _ in model.calls]
    if batched:  # one call per layer for both rows, the skipped layer for the positive row only
        assert layers == [0, 1, 2, 3] * 2
        assert model.calls[:4] == [(0, [1.0, 2.0]), (1, [1.0, 2.0]), (2, [1.0]), (3, [1.0, 2.0])]
    else:  # layer-outer: both branches inside one layer loop, the negative one skipping layer 2
        assert layers == [0, 0, 1, 1, 2, 3, 3] * 2
        assert model.calls[:7] == [(0, [1.0]), (0, [2.0]), (1, [1.0]), (1, [2.0]), (2, [1.0]),
                                   (3, [1.0]), (3, [2.0])]


@pytest.mark.parametrize("batched", [False, True])
def test_layer_1_can_be_skipped(recorded, batched):
    run(AddsContext(), slg_layer=1, cfg_batch=batched)
    assert recorded == [[-2.0, -2.0], [-60.0, -60.0]]  # one layer fewer, as for layer 2


@pytest.mark.parametrize("batched", [False, True])
def test_slg_off_runs_every_layer_in_both_branches(recorded, batched):
    model = AddsContext()
    run(model, slg_layer=0, cfg_batch=batched)
    # negative video 4 x 2 = 8: 8 + 4 (4 - 8) = -8; audio 4 x 30 = 120: 120 + 3 (40 - 120) = -120
    assert recorded == [[-8.0, -8.0], [-120.0, -120.0]]
    assert len(model.calls) == 2 * (1 if batched else 2) * LAYERS


def test_the_last_layer_can_be_the_skipped_one(recorded):
    model = AddsContext()
    run(model, slg_layer=3, cfg_batch=True)
    assert recorded == [[-2.0, -2.0], [-60.0, -60.0]]  # one layer fewer, as for layer 2


def test_guidance_scales_of_1_skip_the_negative_branch(recorded):
    model = AddsContext()
    run(model, video_guidance=1.0, audio_guidance=1.0)
    assert recorded == [[4.0, 4.0], [40.0, 40.0]]  # the positive prediction itself
    assert [c for _, c in model.calls] == [[1.0]] * (2 * LAYERS)
    model = AddsContext()
    run(model, video_guidance=1.0)  # one tower guided: both branches run
    assert recorded[-2:] == [[6.0 + 1 * (4 - 6)] * 2, [-60.0, -60.0]]


def test_the_sampler_settings_are_the_references_inference_defaults():
    s = SamplerSettings()
    assert (s.steps, s.solver, s.shift, s.video_guidance, s.audio_guidance, s.slg_layer, s.seed) == (
        50, "unipc", 5.0, 4.0, 3.0, 11, 103)
    assert (s.cfg_batch, s.step_cache) == (False, 0.0) and s.guided
    assert SamplerSettings(video_guidance=1, audio_guidance=1).guided is False
    assert SamplerSettings(video_guidance=1, audio_guidance=1.5).guided
    assert SamplerSettings(video_guidance=1.5, audio_guidance=1).guided
    assert SamplerSettings(steps=1, step_cache=0.1).steps == 1
    with pytest.raises(ValueError, match="steps must be at least 1, got 0"):
        SamplerSettings(steps=0)
    with pytest.raises(ValueError, match=r"step_cache must be 0 \(off\) or a positive threshold, got -0.1"):
        SamplerSettings(step_cache=-0.1)
    with pytest.raises(ValueError, match="unknown solver 'ddim'; choose one of unipc, dpm\\+\\+, euler"):
        SamplerSettings(solver="ddim")


def test_guidance_is_negative_plus_scale_times_the_difference():
    assert guide(torch.tensor([4.0]), torch.tensor([6.0]), 4.0).tolist() == [-2.0]
    assert guide(torch.tensor([3.0]), torch.tensor([1.0]), 1.0).tolist() == [3.0]


def test_i2v_pins_the_first_frame_before_every_call_and_at_the_end(recorded):
    model = AddsContext()
    first = torch.full((2, 1, 1, 1), 7.0)
    ones = torch.ones(3, 4)
    progress = []
    video, audio = denoise(model, settings=SamplerSettings(steps=2), text=ones,
                           video_negative=ones, audio_negative=ones, video_shape=VIDEO_SHAPE,
                           audio_shape=AUDIO_SHAPE, first_frame_latent=first,
                           callback=lambda done, total: progress.append((done, total)))
    noise_v, noise_a = make_noise(VIDEO_SHAPE, AUDIO_SHAPE, 103, "cpu")
    assert progress == [(1, 2), (2, 2)]
    assert [(float(v[:, 0].unique()), t.tolist(), clean) for v, t, clean in model.prepared] == [
        (7.0, [999], True), (7.0, [500], True)]
    assert torch.equal(model.prepared[1][0][:, 1:], noise_v[:, 1:] + 1)  # stepped once
    assert torch.equal(video[:, :1], first.bfloat16()) and torch.equal(video[:, 1:], noise_v[:, 1:] + 2)
    assert torch.equal(audio, noise_a + 2) and video.dtype == audio.dtype == torch.bfloat16
    assert torch.equal(model.audio_in[0], noise_a) and torch.equal(model.audio_in[1], noise_a + 1)


def test_t2v_leaves_frame_0_to_the_sampler(recorded):
    model = AddsContext()
    video, _ = run(model)
    noise_v, _ = make_noise(VIDEO_SHAPE, AUDIO_SHAPE, 103, "cpu")
    assert torch.equal(video, noise_v + 2)
    assert [clean for _, _, clean in model.prepared] == [False, False]


def test_noise_is_the_seeded_generator_in_bf16_video_then_audio_alike():
    video, audio = make_noise((2, 3), (4,), seed=7, device="cpu")
    expected_v = torch.randn((2, 3), dtype=torch.bfloat16, generator=torch.Generator().manual_seed(7))
    expected_a = torch.randn((4,), dtype=torch.bfloat16, generator=torch.Generator().manual_seed(7))
    assert torch.equal(video, expected_v) and torch.equal(audio, expected_a)


def test_a_callback_that_raises_stops_the_denoising(recorded):
    model = AddsContext()

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        denoise(model, settings=SamplerSettings(steps=2), text=torch.ones(3, 4),
                video_negative=torch.ones(3, 4), audio_negative=torch.ones(3, 4),
                video_shape=VIDEO_SHAPE, audio_shape=AUDIO_SHAPE, callback=stop)
    assert len(model.prepared) == 1


def test_the_stats_list_no_skipped_steps_without_the_step_cache(recorded):
    stats = SamplingStats()
    model = AddsContext()
    ones = torch.ones(3, 4)
    denoise(model, settings=SamplerSettings(steps=2), text=ones, video_negative=ones,
            audio_negative=ones, video_shape=VIDEO_SHAPE, audio_shape=AUDIO_SHAPE, stats=stats)
    assert stats.skipped_steps == []


class Streamer:
    def __init__(self):
        self.events = []

    def before(self, i):
        self.events.append(("before", i))

    def after(self, i):
        self.events.append(("after", i))


@pytest.mark.parametrize("batched", [False, True])
def test_the_streamer_is_told_of_each_layer_before_and_after_it_runs(recorded, batched):
    model, streamer = AddsContext(), Streamer()
    ones = torch.ones(3, 4)
    denoise(model, settings=SamplerSettings(steps=2, slg_layer=2, cfg_batch=batched), text=ones,
            video_negative=ones, audio_negative=ones, video_shape=VIDEO_SHAPE,
            audio_shape=AUDIO_SHAPE, streamer=streamer)
    one_step = [(when, i) for i in range(LAYERS) for when in ("before", "after")]
    assert streamer.events == one_step * 2


@pytest.mark.parametrize("batched", [None, False, True])
def test_cfg_branches_gives_each_branch_its_own_prediction(batched):
    model, streamer = AddsContext(), Streamer()
    ones = torch.ones(3, 4)
    (pos_v, pos_a), (neg_v, neg_a) = sampling.cfg_branches(
        model, torch.zeros(VIDEO_SHAPE), torch.zeros(AUDIO_SHAPE), torch.tensor([999]), text=ones,
        video_negative=2 * ones, audio_negative=3 * ones, first_frame_is_clean=True, slg_layer=2,
        streamer=streamer, **({} if batched is None else {"batched": batched}))
    assert [float(x.flatten()[0]) for x in (pos_v, pos_a, neg_v, neg_a)] == [4.0, 40.0, 6.0, 90.0]
    assert model.prepared[0][2] is True and model.finished == [1.0, 2.0]
    assert len(model.calls) == (LAYERS if batched else 2 * LAYERS - 1)  # unbatched by default
    assert streamer.events == [(when, i) for i in range(LAYERS) for when in ("before", "after")]
