"""MeBT: Memory-efficient Bidirectional Transformer for long-video generation (Yoo et al., CVPR 2023).

One idea per file:
  config.py        dataclass configs and presets (tiny / small / paper)
  data.py          built-in synthetic videos (anti-aliased shapes, with exact ground truth)
  video_files.py   video files (MP4, AVI, WebM, GIF, ...) as streams: header frame counts, windows on demand
  video_folder.py  real videos: a folder of video files and/or frame folders (SkyTimelapse, UCF-101, Taichi)
  clip_loader.py   training clips read by worker processes, drawn by the main process (exact replays)
  video_io.py      tensors <-> GIF / MP4 grids, PNG filmstrips, frame folders
  quantizer.py     EMA vector quantiser
  tokenizer.py     3D-conv VQ-VAE: video <-> token grid
  token_cache.py   the training set encoded once, on disk
  attention.py     the one transformer block (query attends to key/value)
  encoder.py       context -> latents (the bottleneck)
  decoder.py       latents -> targets, linear in the number of targets
  model.py         MeBT = embeddings + encoder + decoder + head
  baselines.py     full-attention and autoregressive transformers for comparison
  masking.py       context / target splits for training
  curriculum.py    short-to-long clip lengths over training
  decoding.py      iterative masked decoding (sampling)
  train_tokenizer.py, train_transformer.py, train_autoregressive.py   the training loops
  distributed.py   one process or many (torchrun + DDP), per-step seeds, graceful stops
  checkpoint.py    atomic saves, safe loads, weight fingerprints
  pipeline.py      glue shared by the entry points: run paths, loading checkpoints, dtype choice
  consistency.py   exact object-persistence, consistency, trajectory and diversity metrics on synthetic data
  stats.py         bootstrap confidence intervals over videos
  profiling.py     FLOPs and saved-activation bytes of a training step
  diagram.py       the architecture drawn and costed from a real ModelConfig
  i3d.py, fvd.py   Inception-I3D and the Frechet Video Distance (bring your own weights)
"""
