"""FVD pieces: the I3D's state-dict layout and loading errors, TensorFlow padding, the protocol's preprocessing and
clip sampling, and the Frechet distance in float64 against direct computations.

No pretrained weights exist here: the I3D below is *randomly initialised* (random_i3d), so the distances it
gives are only a "frechet distance (random I3D, test only)", never an FVD.

    python -m pytest -q tests/test_fvd.py
"""
import argparse
import re
from collections import OrderedDict

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from torch import nn

from benchmarks import fvd as fvd_bench
from mebt.data import make_synthetic_video
from mebt.fvd import features_distance, folder_clips, frechet_distance, gaussian, i3d_logits, preprocess, sample_clips
from mebt.i3d import InceptionI3D, load_i3d, same_pad
from mebt.video_folder import VideoFolder
from mebt.video_io import to_uint8

# The reference layout, written out independently of mebt/i3d.py: Inception-v1's published table (Szegedy et al.
# 2015; I3D inflates it), with the names VideoGPT's TF-Hub -> PyTorch conversion gives (i3d_pretrained_400.pt).
STEM = [("Conv3d_1a_7x7", 3, 64, 7), ("Conv3d_2b_1x1", 64, 64, 1), ("Conv3d_2c_3x3", 64, 192, 3)]
BLOCKS = [("Mixed_3b", 192, 64, 96, 128, 16, 32, 32), ("Mixed_3c", 256, 128, 128, 192, 32, 96, 64),
          ("Mixed_4b", 480, 192, 96, 208, 16, 48, 64), ("Mixed_4c", 512, 160, 112, 224, 24, 64, 64),
          ("Mixed_4d", 512, 128, 128, 256, 24, 64, 64), ("Mixed_4e", 512, 112, 144, 288, 32, 64, 64),
          ("Mixed_4f", 528, 256, 160, 320, 32, 128, 128), ("Mixed_5b", 832, 256, 160, 320, 32, 128, 128),
          ("Mixed_5c", 832, 384, 192, 384, 48, 128, 128)]


def reference_layout() -> dict[str, tuple]:
    """{key: shape} of i3d_pretrained_400.pt."""
    units = list(STEM)
    for name, c_in, b0, b1a, b1b, b2a, b2b, b3b in BLOCKS:
        units += [(f"{name}.b0", c_in, b0, 1), (f"{name}.b1a", c_in, b1a, 1), (f"{name}.b1b", b1a, b1b, 3),
                  (f"{name}.b2a", c_in, b2a, 1), (f"{name}.b2b", b2a, b2b, 3), (f"{name}.b3b", c_in, b3b, 1)]
    layout = {}
    for name, c_in, c_out, k in units:
        layout[f"{name}.conv3d.weight"] = (c_out, c_in, k, k, k)
        for stat in ("weight", "bias", "running_mean", "running_var"):         # TF's beta + moving stats; weight = 1
            layout[f"{name}.bn.{stat}"] = (c_out,)
    layout["logits.conv3d.weight"], layout["logits.conv3d.bias"] = (400, 1024, 1, 1, 1), (400,)
    return layout


def random_i3d(seed: int = 0) -> InceptionI3D:
    """A RANDOMLY INITIALISED I3D (test only): He-normal convs keep activations at scale through the 57 layers."""
    torch.manual_seed(seed)
    model = InceptionI3D()
    for module in model.modules():
        if isinstance(module, nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model.eval()


def reference_file(path, extra: dict | None = None, drop: str | None = None, reshape: str | None = None):
    """A state dict of the reference layout with random values, saved as torch.save(OrderedDict) like the original."""
    generator = torch.Generator().manual_seed(1)
    state = OrderedDict((k, torch.randn(shape, generator=generator)) for k, shape in reference_layout().items())
    state.pop(drop, None)
    if reshape:
        state[reshape] = torch.zeros(3)
    state.update(extra or {})
    torch.save(state, path)
    return state


def test_state_dict_keys_and_shapes_are_those_of_i3d_pretrained_400():
    ours = {k: tuple(v.shape) for k, v in InceptionI3D().state_dict().items()}
    assert ours == reference_layout() and len(ours) == 287


def test_loads_a_file_of_the_reference_layout_tensor_for_tensor(tmp_path):
    saved = reference_file(tmp_path / "i3d.pt")
    state = load_i3d(tmp_path / "i3d.pt").state_dict()
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    # a copy saved from torch's own BatchNorm3d carries num_batches_tracked counters: they are not weights
    reference_file(tmp_path / "bn.pt", extra={"Mixed_3b.b0.bn.num_batches_tracked": torch.tensor(7)})
    assert torch.equal(load_i3d(tmp_path / "bn.pt").state_dict()["logits.conv3d.bias"], saved["logits.conv3d.bias"])


@pytest.mark.parametrize("change, message", [
    ({"drop": "Mixed_4d.b2b.bn.running_var"}, r"i3d\.pt: Mixed_4d\.b2b\.bn\.running_var is missing \(1 missing, 0 unknown"),
    ({"reshape": "Mixed_5c.b1b.conv3d.weight"},
     r"i3d\.pt: Mixed_5c\.b1b\.conv3d\.weight has shape \(3,\), expected \(384, 192, 3, 3, 3\)"),
    ({"extra": {"fc.weight": torch.zeros(2)}}, r"i3d\.pt: fc\.weight is not an I3D tensor \(0 missing, 1 unknown"),
])
def test_missing_misshapen_or_unknown_key_is_one_line_naming_it(tmp_path, change, message):
    reference_file(tmp_path / "i3d.pt", **change)
    with pytest.raises(ValueError, match=message) as error:
        load_i3d(tmp_path / "i3d.pt")
    assert "\n" not in str(error.value)


def test_a_file_that_is_not_a_state_dict_is_one_line(tmp_path):
    (tmp_path / "i3d.pt").write_text("not weights")
    with pytest.raises(ValueError, match=r"i3d\.pt is not a state dict of tensors \(.*\); expected the Kinetics-400"):
        load_i3d(tmp_path / "i3d.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"list\.pt holds a list, expected a state dict"):
        load_i3d(tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError, match="no I3D weights at"):
        load_i3d(tmp_path / "nowhere.pt")


def test_same_padding_is_tensorflows():
    x = torch.ones(1, 1, 1, 1, 224)
    padded = same_pad(x, (1, 1, 7), (1, 1, 2))[0, 0, 0, 0]                    # 224 % 2 == 0: 7 - 2 = 5 pixels
    assert padded.shape == (229,) and padded[:2].sum() == 0 and padded[2] == 1 and padded[-3:].sum() == 0
    odd = same_pad(torch.ones(1, 1, 1, 1, 225), (1, 1, 7), (1, 1, 2))[0, 0, 0, 0]   # 7 - 225 % 2 = 6: 3 + 3
    assert odd.shape == (231,) and odd[:3].sum() == 0 and odd[-3:].sum() == 0


@pytest.mark.parametrize("frames, size, block_5c, conv_1a", [(16, 224, (2, 7, 7), (8, 112, 112)),
                                                             (128, 224, (16, 7, 7), (64, 112, 112)),
                                                             (15, 225, (2, 8, 8), (8, 113, 113))])
def test_feature_map_sizes_are_ceil_of_size_over_stride(frames, size, block_5c, conv_1a):
    model = InceptionI3D().to("meta")                                         # shapes only: no arithmetic
    seen = {}
    for name in ("Conv3d_1a_7x7", "Mixed_5c"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.shape))
    logits = model(torch.empty(2, 3, frames, size, size, device="meta"))
    assert seen["Conv3d_1a_7x7"] == (2, 64, *conv_1a) and seen["Mixed_5c"] == (2, 1024, *block_5c)
    assert logits.shape == (2, 400)


def test_preprocess_resizes_to_224_and_scales_to_minus_one_one():
    clips = torch.zeros(2, 3, 2, 2, 3, dtype=torch.uint8)                    # (B, T, H, W, 3)
    clips[1, 2] = torch.tensor([[[255, 0, 51], [255, 0, 51]], [[255, 0, 51], [255, 0, 51]]], dtype=torch.uint8)
    x = preprocess(clips)
    assert x.shape == (2, 3, 3, 224, 224) and x.dtype == torch.float32
    assert (x[0] == -1).all() and (x[1, :, :2] == -1).all()                  # black: -1
    assert torch.allclose(x[1, :, 2], torch.tensor([1.0, -1.0, -0.6]).view(3, 1, 1).expand(3, 224, 224))


def gaussians(seed: int, n: int = 300, d: int = 12):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d))
    return rng.normal(size=(n, d)) @ mix + rng.normal(size=d)                # (n, d): correlated, shifted


def test_frechet_distance_matches_a_direct_computation():
    for seed in range(3):
        a, b = gaussians(2 * seed), gaussians(2 * seed + 1)
        (mu1, s1), (mu2, s2) = gaussian(a), gaussian(b)
        cross = np.sqrt(np.linalg.eigvals(s1 @ s2)).real.sum()              # tr((S1 S2)^1/2): another route
        direct = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * cross
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(direct, rel=1e-9)
        assert np.allclose(s1, np.cov(a.T), rtol=1e-12)                      # unbiased covariance (n - 1)
    mu1, mu2, v1, v2 = np.array([1.0, -2.0]), np.array([0.5, 1.0]), np.array([4.0, 9.0]), np.array([1.0, 16.0])
    closed_form = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()   # diagonal Gaussians
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(closed_form, rel=1e-12)


def test_frechet_distance_is_zero_on_itself_symmetric_and_float64_exact():
    a, b = gaussians(5), gaussians(6)
    assert abs(features_distance(a, a)) < 1e-9
    assert features_distance(a, b) == pytest.approx(features_distance(b, a), rel=1e-10)
    # features around 1e4 (logits can be large) shifted by 1e-3: float32 would lose the shift to rounding
    offset = a * 1e-2 + 1e4
    assert features_distance(offset, offset + 1e-3) == pytest.approx(12 * 1e-6, rel=1e-4)


def synthetic_uint8(count: int, seed: int) -> np.ndarray:
    """(count, 16, 32, 32, 3) uint8 bouncing shapes (mebt/data.py)."""
    return np.stack([to_uint8(make_synthetic_video((seed, i), frames=16, resolution=32)[0]) for i in range(count)])


def test_random_i3d_distance_is_zero_on_itself_symmetric_and_grows_with_corruption():
    """Distances from a RANDOM I3D: a "frechet distance (random I3D, test only)", not an FVD."""
    i3d = random_i3d()
    real = synthetic_uint8(24, seed=0)
    features = lambda videos: i3d_logits(i3d, np.split(videos, 3), size=32)   # (24, 400); 32 px keeps it fast
    real_features = features(real)
    assert abs(features_distance(real_features, real_features)) < 1e-9       # 24 videos, 400 dims: rank 23
    noise = np.random.default_rng(0).normal(size=real.shape)
    distances = []
    for level in (0, 30, 60, 120):                                           # pixel noise std, in 0..255 levels
        corrupted = np.clip(synthetic_uint8(24, seed=1) + level * noise, 0, 255).astype(np.uint8)
        other = features(corrupted)
        distances.append(features_distance(real_features, other))
        assert distances[-1] == pytest.approx(features_distance(other, real_features), rel=1e-8)
    assert all(a < b for a, b in zip(distances, distances[1:])), distances   # more corruption, farther


def test_sample_clips_take_random_strided_windows_from_a_memmap(tmp_path):
    videos = np.lib.format.open_memmap(tmp_path / "s.npy", mode="w+", dtype=np.uint8, shape=(5, 40, 4, 4, 3))
    videos[:] = np.arange(40, dtype=np.uint8)[None, :, None, None, None]     # pixel value = frame number
    clips = np.concatenate(list(sample_clips(np.load(tmp_path / "s.npy", mmap_mode="r"), frames=4, stride=3,
                                             count=5, rng=np.random.default_rng(0), batch=2)))
    assert clips.shape == (5, 4, 4, 4, 3) and clips.dtype == np.uint8
    firsts = clips[:, 0, 0, 0, 0].astype(int)
    assert (clips[:, :, 0, 0, 0] == firsts[:, None] + 3 * np.arange(4)).all() and (firsts <= 40 - 12).all()
    assert len(set(firsts)) > 1                                              # windows differ between videos
    with pytest.raises(ValueError, match="5 videos, 6 needed"):
        next(sample_clips(videos, 4, 3, 6, np.random.default_rng(0)))


def test_folder_clips_reuse_videos_with_new_windows(tmp_path):
    for k in range(2):
        frames = np.zeros((30, 8, 8, 3), np.uint8)
        frames[..., 0] = (8 * np.arange(30))[:, None, None]
        iio.imwrite(tmp_path / f"v{k}.gif", frames, duration=40, loop=0)
    clips = np.concatenate(list(folder_clips(VideoFolder(tmp_path, 4, 8), 5, np.random.default_rng(0), batch=2)))
    assert clips.shape == (5, 4, 8, 8, 3) and clips.dtype == np.uint8        # 5 clips from 2 videos
    firsts = np.round(clips[:, 0, 0, 0, 0] / 8)
    assert (np.round(clips[:, :, 0, 0, 0] / 8) == firsts[:, None] + np.arange(4)).all() and len(set(firsts)) > 2


def bench_args(*argv):
    parser = argparse.ArgumentParser()
    fvd_bench.add_parser(parser.add_subparsers())
    args = parser.parse_args(["fvd", *map(str, argv)])
    args.out_dir = None                                                      # never reached: every case refuses
    return args


@pytest.mark.parametrize("argv, message", [
    (["--real", "r", "--fake", "f.npy"], "pass --i3d PATH, the Kinetics-400 Inception-I3D weights i3d_pretrained_400.pt"),
    (["--i3d", "I3D", "--real", "r"], "--fake is required"),
    (["--i3d", "I3D", "--real", "r", "--fake", "FAKE", "--num-videos", "9"], "has 4 videos, --num-videos 9 asks"),
    (["--i3d", "BAD", "--real", "r", "--fake", "FAKE", "--num-videos", "4"], r"Mixed_3b\.b0\.bn\.bias is missing"),
])
def test_bench_refuses_in_one_line_without_weights_or_with_bad_inputs(tmp_path, argv, message, capsys):
    np.save(tmp_path / "fake.npy", np.zeros((4, 16, 8, 8, 3), np.uint8))
    reference_file(tmp_path / "bad.pt", drop="Mixed_3b.b0.bn.bias")
    fill = {"I3D": tmp_path / "i3d.pt", "FAKE": tmp_path / "fake.npy", "BAD": tmp_path / "bad.pt"}
    with pytest.raises(SystemExit) as exit:
        fvd_bench.run_fvd(bench_args(*[fill.get(a, a) for a in argv]), torch.device("cpu"))
    assert str(exit.value.code).startswith("bench.py fvd: error: ") and "\n" not in str(exit.value.code)
    assert re.search(message, str(exit.value.code)), exit.value.code
    assert "FVD" not in capsys.readouterr().out                              # nothing measured, nothing printed
