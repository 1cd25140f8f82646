"""Inception-I3D (Carreira & Zisserman, CVPR 2017), the video classifier whose Kinetics-400 logits FVD compares.

Our own PyTorch code, laid out so that `state_dict()` has exactly the names and shapes of `i3d_pretrained_400.pt`,
the file TATS, VideoGPT and the MeBT authors' FVD code load (DeepMind's TF-Hub Kinetics-400 I3D converted to
PyTorch by the VideoGPT authors): `Conv3d_1a_7x7.conv3d.weight`, `Mixed_4b.b1b.bn.running_var`, ...,
`logits.conv3d.bias`: 287 tensors. We never download it: `load_i3d(path)` reads a copy the user has.

    i3d = load_i3d("i3d_pretrained_400.pt")            # a one-line ValueError names any missing or misshapen key
    logits = i3d(clips)                                # (B, 3, 16, 224, 224) in [-1, 1] -> (B, 400)

Behaviour copied from the reference port (so that our features are theirs): TensorFlow 'SAME' padding with zeros
(more at the end when odd), also before max pooling; batch norm with eps 1e-5 and the weight of 1 the conversion
stored; the head averages 2 x 7 x 7 windows (at 224 x 224 that is the whole 7 x 7 map), applies the 1x1x1 logits
conv, then averages over time. Inference only: there is no dropout (identity in eval mode) and the norm layers
are fixed. At sizes other than 224 we average the whole map, which the reference cannot run (tests use 32 px).

Try it: python -c "from mebt.i3d import InceptionI3D; print(sum(p.numel() for p in InceptionI3D().state_dict().values()))"
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 400
BN_EPS = 1e-5                     # the PyTorch port's value (DeepMind's TensorFlow model used 1e-3)
# (name, input channels, output channels of the six branch convs: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | pool -> 1x1)
MIXED = (("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)), ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
         ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)), ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
         ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)), ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
         ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)), ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
         ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)))
# max pools (kernel, stride) that run before these blocks
POOL_BEFORE = {"Conv3d_2b_1x1": ((1, 3, 3), (1, 2, 2)), "Mixed_3b": ((1, 3, 3), (1, 2, 2)),
               "Mixed_4b": ((3, 3, 3), (2, 2, 2)), "Mixed_5b": ((2, 2, 2), (2, 2, 2))}


def same_pad(x: torch.Tensor, kernel: tuple, stride: tuple) -> torch.Tensor:
    """Zero-pad (B, C, T, H, W) as TensorFlow's 'SAME': the output is ceil(size / stride); odd totals pad more
    at the end."""
    pads = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):   # F.pad lists W first
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class FrozenBatchNorm3d(nn.Module):
    """Batch norm with fixed statistics: the four tensors the file holds (weight, bias, running_mean, running_var)."""

    def __init__(self, channels: int):
        super().__init__()
        for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            self.register_buffer(name, torch.full((channels,), value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=BN_EPS)


class Unit3D(nn.Module):
    """'SAME'-padded conv3d (no bias) -> frozen batch norm -> ReLU; as `logits`: conv3d with bias only."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, head: bool = False):
        super().__init__()
        self.kernel, self.stride = (kernel,) * 3, (stride,) * 3
        self.conv3d = nn.Conv3d(c_in, c_out, kernel, stride, bias=head)
        self.bn = None if head else FrozenBatchNorm3d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(same_pad(x, self.kernel, self.stride))
        return x if self.bn is None else F.relu(self.bn(x))


class Inception(nn.Module):
    """Four branches concatenated on channels: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | 3x3 max pool -> 1x1."""

    def __init__(self, c_in: int, c: tuple[int, ...]):
        super().__init__()
        self.b0 = Unit3D(c_in, c[0])
        self.b1a, self.b1b = Unit3D(c_in, c[1]), Unit3D(c[1], c[2], 3)
        self.b2a, self.b2b = Unit3D(c_in, c[3]), Unit3D(c[3], c[4], 3)
        self.b3b = Unit3D(c_in, c[5])                                   # "b3a" is the parameter-free pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.max_pool3d(same_pad(x, (3, 3, 3), (1, 1, 1)), 3, 1)
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(pooled)], dim=1)


class InceptionI3D(nn.Module):
    """(B, 3, T, H, W) in [-1, 1] -> Kinetics-400 logits (B, 400). T >= 9 frames (16 in FVD), H = W = 224 in FVD."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, 7, stride=2)
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, 3)
        for name, c_in, channels in MIXED:
            self.add_module(name, Inception(c_in, channels))
        self.logits = Unit3D(1024, num_classes, head=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, block in self.named_children():
            if name == "logits":
                break
            if name in POOL_BEFORE:
                kernel, stride = POOL_BEFORE[name]
                x = F.max_pool3d(same_pad(x, kernel, stride), kernel, stride)
            x = block(x)                                                # Mixed_5c: (B, 1024, T/8, H/32, W/32)
        x = F.avg_pool3d(x.mean((3, 4), keepdim=True), (2, 1, 1), stride=1)   # (B, 1024, T/8 - 1, 1, 1)
        return self.logits(x).flatten(2).mean(2)                        # (B, classes): averaged over time


def load_i3d(path, device="cpu") -> InceptionI3D:
    """The I3D with the weights of `path` (a state dict as i3d_pretrained_400.pt holds it), in eval mode."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no I3D weights at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)   # tensors only: never runs code
    except Exception as error:                           # pickles of classes, zips, text: each fails differently
        raise ValueError(f"{path} is not a state dict of tensors ({type(error).__name__}); expected the "
                         "Kinetics-400 I3D weights i3d_pretrained_400.pt") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, expected a state dict (i3d_pretrained_400.pt)")
    model = InceptionI3D()
    expected = model.state_dict()
    # a copy saved from torch's own BatchNorm3d also has num_batches_tracked counters: meaningless at inference
    state = {k: v for k, v in state.items() if not k.endswith(".num_batches_tracked")}
    missing = [k for k in expected if k not in state]
    unknown = [k for k in state if k not in expected]
    if missing or unknown:
        key, what = (missing[0], "is missing") if missing else (unknown[0], "is not an I3D tensor")
        raise ValueError(f"{path}: {key} {what} ({len(missing)} missing, {len(unknown)} unknown keys); "
                         "expected the layout of i3d_pretrained_400.pt")
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise ValueError(f"{path}: {key} has shape {tuple(state[key].shape)}, expected {tuple(tensor.shape)} "
                             "(the Kinetics-400 I3D of i3d_pretrained_400.pt)")
    model.load_state_dict(state)
    return model.to(device).eval()
