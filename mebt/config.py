"""Configuration: one dataclass per part, presets that fill them in, and a dict round trip.

The whole `Config` is stored (as a plain dict) inside every checkpoint, so
`python sample.py --ckpt out/mebt.pt` can rebuild everything without flags.

    from mebt.config import get_preset
    cfg = get_preset("tiny")        # CPU, minutes
    cfg = get_preset("paper")       # the paper-scale model (336M parameters; the paper reports ~345M), GPU

Presets:
- tiny  : 32x32 synthetic clips of 128 frames -> 32x8x8 = 2048 tokens; d=128. Trains on 2 CPU cores.
- small : 64x64, 128 frames -> 32x16x16 = 8192 tokens; d=512. One GPU, hours.
- paper : 128x128, 128 frames -> 32x16x16 = 8192 tokens; d=1024, 24 layers, 256 latents, vocab 16384.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class DataConfig:
    dataset: str = "synthetic"   # "synthetic" (built in, generated), or "videos" / "skytimelapse" (a folder, same reader)
    resolution: int = 32         # frames are square: resolution x resolution pixels
    frames: int = 128            # clip length in video frames (a multiple of the tokenizer's temporal factor)
    stride: int = 1              # take every `stride`-th frame of a real video (1 = native frame rate)
    num_videos: int = 512        # synthetic only: size of the training set (the held-out set is separate)
    num_eval_videos: int = 32    # synthetic only: held-out videos for PSNR / masked-token NLL
    max_objects: int = 2         # synthetic only: 1..max_objects shapes per video


@dataclass
class TokenizerConfig:
    channels: int = 32                 # width after the first downsampling stage; doubled at each further stage
    temporal_downsample: int = 4       # T frames -> T/4 latent frames (as TATS / MeBT)
    spatial_downsample: int = 4        # H pixels -> H/4 token rows (tiny: 32 -> 8)
    # number of discrete codes = the transformer's vocabulary. 64, not 256: fewer ways for one object patch to be
    # coded means fewer codes for the transformer to spread one "object here" decision over. Measured (README,
    # "Making MeBT win"): 0.4 dB less PSNR, +11 to +23 points of persistence at the same steps (3 runs);
    # 32 codes drew every object red
    codebook_size: int = 64
    code_dim: int = 32                 # dimension of each codebook vector
    ema_decay: float = 0.99            # EMA codebook update rate (docs/architecture.md, "the tokenizer")
    commitment: float = 0.25           # weight of || z_e - sg(z_q) ||^2
    dead_code_threshold: float = 1.0   # a code whose EMA usage count falls below this is restarted


@dataclass
class ModelConfig:
    vocab_size: int = 64                           # must equal TokenizerConfig.codebook_size
    grid: tuple[int, int, int] = (32, 8, 8)        # (t, h, w): largest token grid; sizes the positional tables.
                                                   # A t below the clip's makes a window model (see train_transformer)
    d_model: int = 128                             # width of every stream (latents, context, targets)
    n_heads: int = 4                               # attention heads; d_model must be divisible by it
    n_latents: int = 64                            # L: the bottleneck size; cost is O(N * L). 64 for 2048 tokens
                                                   # (1:32, the authors' ratio): lower held-out CE in 4 runs of 4, none
                                                   # lost its objects (one of four 32-latent runs did), ~1.13x step time
                                                   # (README, "Making MeBT win")
    encoder_layers: tuple[str, ...] = ("cross", "self") * 2 + ("cross",)   # latents <- context / latents <- latents
    decoder_layers: tuple[str, ...] = ("read", "write") * 2 + ("read",)     # targets <- latents / latents <- [latents; targets]
    mlp_ratio: int = 4                             # hidden width of each MLP = mlp_ratio * d_model
    dropout: float = 0.0                           # paper: 0.1 on sky; 0 for small data we want to fit fast
    mask_schedule: str = "uniform"                 # how the per-batch mask ratio is drawn: "uniform" (authors) or "cosine" (MaskGIT)
    frame_split_prob: float = 0.0                  # share of training batches whose context is whole frames at the
                                                   # window's start (and end): helps prediction, hurt unconditional

    @property
    def n_positions(self) -> int:
        t, h, w = self.grid
        return t * h * w


@dataclass
class TrainConfig:
    # tokenizer stage
    tokenizer_steps: int = 1500
    tokenizer_batch_size: int = 8
    tokenizer_lr: float = 1e-3
    tokenizer_clip_frames: int = 16      # the tokenizer is convolutional: it trains on short clips, encodes long ones
    # transformer stage
    # 7000 steps of 4 clips, not 3500 of 8: the same clips seen, twice the updates, about the same CPU time on 1
    # thread. Early in training more small steps beat fewer large ones: held-out CE 0.798 vs 0.844 and unconditional
    # persistence 66% vs 15% on one tokenizer, one run each (README, "Making MeBT win": how noisy single runs are)
    transformer_steps: int = 7000
    batch_size: int = 4
    lr: float = 1e-3                     # peak learning rate (after warm-up); the paper used ~3e-5 at 345M params
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1            # cosine decay ends at lr * min_lr_ratio
    weight_decay: float = 0.01           # applied to matrices only (not biases, norms, embeddings)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    curriculum: bool = True              # grow the clip length during training (docs/curriculum.md)
    curriculum_full_at: float = 0.65     # fraction of transformer_steps at which the full length is the mode
    curriculum_spread: float = 2.0       # c in p(T): the length is spread about +-c latent frames around its mode
    eval_every: int = 200
    sample_every: int = 0                # 0 = only at the end
    eval_mask_ratio: float = 0.5         # held-out masked-token cross-entropy is measured at this fixed ratio
    # decoding defaults used for the samples written during / after training
    sample_steps: int = 32
    # 1000 = reveal in (nearly) random order. The paper's 4 keeps the most confident tokens first: on our videos
    # that is the background everywhere, and the objects are squeezed out (object tokens: 4% of a sample vs 30%
    # of the data). Random order is the order the model was trained in (random masks); see mebt/decoding.py.
    sample_context_temperature: float = 1000.0
    sample_bootstrap: int = 64           # first reveal this many tokens one per model call (authors: 64): the first
                                         # object tokens then agree with each other instead of being drawn blind
    sample_revise: int = 4               # draft-and-revise rounds at the end (2 model calls each): resample each random
    sample_revise_temperature: float = 1.0   # half given the other; at 1.0 (authors: 0.7, which favours background)
    # Sharper object codes: every draw keeps the model's p(background) and sharpens the other codes by this
    # temperature (mebt.decoding.sharpen_foreground). Off (1) by default: 0.5 raised MeBT's persistence but the
    # sliding window's more, and it narrows the shapes and colours drawn (README, "Sharper object codes").
    # Acts only where the data has a background code (next field)
    sample_foreground_temperature: float = 1.0
    # the code that is at least half of the training tokens (a flat background), found by train.py in the token
    # cache (mebt.token_cache.background_code); -1 = none (real videos), which switches the line above off
    sample_background_code: int = -1


@dataclass
class Config:
    name: str = "tiny"
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def token_grid(self) -> tuple[int, int, int]:
        """(t, h, w) of one full clip after tokenization."""
        return (self.data.frames // self.tokenizer.temporal_downsample,
                self.data.resolution // self.tokenizer.spatial_downsample,
                self.data.resolution // self.tokenizer.spatial_downsample)

    def validate(self) -> "Config":
        """Raise ValueError (one line, naming the field) if the parts do not fit together."""
        d, tk, m = self.data, self.tokenizer, self.model
        if d.frames % tk.temporal_downsample:
            raise ValueError(f"data.frames={d.frames} must be a multiple of tokenizer.temporal_downsample={tk.temporal_downsample}")
        if d.resolution % tk.spatial_downsample:
            raise ValueError(f"data.resolution={d.resolution} must be a multiple of tokenizer.spatial_downsample={tk.spatial_downsample}")
        if m.vocab_size != tk.codebook_size:
            raise ValueError(f"model.vocab_size={m.vocab_size} must equal tokenizer.codebook_size={tk.codebook_size}")
        t, h, w = self.token_grid
        if tuple(m.grid[1:]) != (h, w) or not 1 <= m.grid[0] <= t:
            # a shorter grid is a window model (the sliding-window baseline): it trains on random windows of the clip
            raise ValueError(f"model.grid={tuple(m.grid)} must be the clip's token grid {self.token_grid}, "
                             f"or (t' <= {t}, {h}, {w}) for a model of windows of t' latent frames")
        if m.d_model % m.n_heads:
            raise ValueError(f"model.d_model={m.d_model} must be divisible by model.n_heads={m.n_heads}")
        if m.mask_schedule not in ("uniform", "cosine"):
            raise ValueError(f"model.mask_schedule={m.mask_schedule!r}: expected 'uniform' or 'cosine'")
        if not 0.0 <= m.frame_split_prob <= 1.0:
            raise ValueError(f"model.frame_split_prob={m.frame_split_prob}: expected a probability in [0, 1]")
        if set(m.encoder_layers) - {"cross", "self"} or set(m.decoder_layers) - {"read", "write"}:
            raise ValueError("model.encoder_layers takes 'cross'/'self', model.decoder_layers takes 'read'/'write'")
        tr = self.train
        if not 0.0 < tr.curriculum_full_at <= 1.0:
            raise ValueError(f"train.curriculum_full_at={tr.curriculum_full_at}: expected a fraction of training in (0, 1]")
        if tr.sample_foreground_temperature <= 0:
            raise ValueError(f"train.sample_foreground_temperature={tr.sample_foreground_temperature}: expected > 0 (1 = off)")
        if not 0.0 <= tr.min_lr_ratio <= 1.0:
            raise ValueError(f"train.min_lr_ratio={tr.min_lr_ratio}: expected a fraction of the peak lr in [0, 1]")
        if d.dataset not in ("synthetic", "videos", "skytimelapse"):
            raise ValueError(f"data.dataset={d.dataset!r}: expected 'synthetic', 'videos' or 'skytimelapse'")
        if d.stride < 1:
            raise ValueError(f"data.stride={d.stride} must be >= 1 (1 = every frame)")
        return self

    def to_dict(self) -> dict:
        """Plain Python values only (tuples become lists): safe for torch.load(weights_only=True)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        def build(dc, values):
            kwargs = {}
            for f in dataclasses.fields(dc):
                if f.name in values:
                    v = values[f.name]
                    kwargs[f.name] = tuple(v) if isinstance(v, list) else v   # lists came from tuples
            return dc(**kwargs)
        return cls(name=d.get("name", "custom"),
                   data=build(DataConfig, d.get("data", {})),
                   tokenizer=build(TokenizerConfig, d.get("tokenizer", {})),
                   model=build(ModelConfig, d.get("model", {})),
                   train=build(TrainConfig, d.get("train", {}))).validate()


def _tiny() -> Config:
    return Config(name="tiny")   # the dataclass defaults *are* the tiny preset


def _small() -> Config:
    return Config(
        name="small",
        data=DataConfig(resolution=64, frames=128, num_videos=4096),
        tokenizer=TokenizerConfig(channels=64, spatial_downsample=4, codebook_size=4096, code_dim=128),
        model=ModelConfig(vocab_size=4096, grid=(32, 16, 16), d_model=512, n_heads=8, n_latents=128,
                          encoder_layers=("cross", "self") * 3 + ("cross",),
                          decoder_layers=("read", "write") * 2 + ("read",)),
        train=TrainConfig(tokenizer_steps=50_000, tokenizer_batch_size=16, tokenizer_lr=3e-4,
                          transformer_steps=200_000, batch_size=16, lr=3e-4, warmup_steps=2000,
                          eval_every=2000, sample_every=10_000),
    )


def _paper() -> Config:
    # the paper's model: d=1024, 16 heads, 24 layers (13 encoder + 11 decoder), 256 latents, vocab 16384,
    # 32x16x16 tokens for 128 frames of 128x128 video; 336M parameters here (the paper reports ~345M).
    return Config(
        name="paper",
        data=DataConfig(dataset="skytimelapse", resolution=128, frames=128),
        tokenizer=TokenizerConfig(channels=128, spatial_downsample=8, codebook_size=16384, code_dim=256),
        model=ModelConfig(vocab_size=16384, grid=(32, 16, 16), d_model=1024, n_heads=16, n_latents=256,
                          encoder_layers=("cross", "self") * 6 + ("cross",),
                          decoder_layers=("read", "write") * 5 + ("read",),
                          dropout=0.1),
        train=TrainConfig(tokenizer_steps=200_000, tokenizer_batch_size=8, tokenizer_lr=1e-4,
                          transformer_steps=1_500_000, batch_size=8, lr=3e-5, warmup_steps=5000,
                          eval_every=10_000, sample_every=50_000,
                          # the authors' decoding on sky (no dominant token there): confidence order, 2 revise rounds at 0.7
                          sample_context_temperature=4.0, sample_revise=2, sample_revise_temperature=0.7),
    )


PRESETS = {"tiny": _tiny, "small": _small, "paper": _paper}


def get_preset(name: str) -> Config:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]().validate()
