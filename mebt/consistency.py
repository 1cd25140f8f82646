"""Exact long-video consistency of synthetic bouncing-shape videos, using the known generating process.

No learned network is involved (this is not FVD or anything like it). The synthetic generator (mebt/data.py)
promises that an object's colour, shape and count never change and that it moves at most max_speed pixels a
frame. We find each palette colour in every frame and check those promises:

  detect_objects(video)                  -> Detections: per frame and palette colour: present, centroid, shape
  object_persistence(video, reference)   -> per 16-frame window: fraction of frames in which every reference
                                            object is present with its colour and shape, and nothing else is
  persistence_failures(video, reference) -> per frame: a reference object lost, an extra colour present, a lost
                                            object still in sight in another shape
  motion_plausibility(video)             -> per 16-frame window: fraction of frame-to-frame centroid moves
                                            within the generator's speed limit
  object_consistency(video)              -> per 16-frame window: fraction of frames holding the video's own modal
                                            object set (reference-free: no frame is special, unlike frame 1)
  trajectory_error(video, truth)         -> per 16-frame window: pixels between each true object and the detection
                                            of its colour and shape, and the share of sightings missed
  object_histograms(objects)             -> object count, colour and shape histograms (for diversity)

A window with no judged move (or sighting) scores nan. Every metric takes a single (3, T, H, W) video in [-1, 1];
pass `found=detect_objects(video)` to share one detection between several of them.

Occlusion: objects overlap in ground-truth videos, so three things are excused. (1) A detection whose shape is
wrong while another object is close by (it is partly covered). (2) An object that vanishes close to another one,
if its last sighting was already partly covered (real occlusion is gradual: a removed object vanishes at full
size); it is assumed to ride behind that occluder, and the whole hidden spell counts only if the object comes
back, or the video ends within MAX_HIDDEN_AT_END frames; once it is away from every other object unseen, it
has vanished for good. (3) Moves of objects close to another one are not judged (a partly covered object's
centroid jumps). Trajectories are judged only where the true object touches no other. The thresholds below
were set from measurements on ground truth (hard-edged shapes), with margin; with the generator's anti-aliased
edges, 1,000 ground-truth videos at 32 px and 60 at 64 px score 100% on persistence (to the truth and to frame
1), motion and consistency, 0 px trajectory error, no miss, and their modal objects are the true ones.
The price: an object that vanishes while half covered by another one, and is then replaced by a look-alike that
comes out from behind it, is not caught.

Try it:
    python -m mebt.consistency          # scores a ground-truth video and a corrupted copy
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import torch

from mebt.data import (PALETTE, SHAPES, VideoTruth, make_synthetic_video, max_speed, object_radius, render,
                       shape_mask)

WINDOW = 16                  # frames per reported window
COLOUR_TOLERANCE = 60.0      # RGB distance (0..255 scale) within which a pixel counts as a palette colour
MIN_AREA = 0.3               # present = covers >= this fraction of the smallest shape (a diamond, 2 r^2 pixels)
TOUCH_DISTANCE = 2.5         # x radius: closer centroids may overlap (truth: wrong shapes <= 2.2, jumps <= 1.7)
HIDE_DISTANCE = 1.75         # x radius: an object vanishing this close to another may be behind it (truth <= 1.4)
COVERED_AREA = 0.75          # x nominal area: a smaller sighting is partly covered (truth: vanishing after
                             # <= 0.70, an uncovered shape >= 0.80 at 32 px)
MAX_HIDDEN_AT_END = 3 * WINDOW   # frames an object may still be hidden when the video ends (truth: up to 34)
MOTION_TOLERANCE = 1.0       # pixels: hard-edged shapes gain/lose whole pixel rows, so centroids jitter
MODAL_SHARE = 0.25           # a colour in this share of frames is one of the video's own objects (truth: an object
                             # hidden behind another for most of the video is seen in 40% of frames)


@dataclass
class Detections:
    """What each palette colour looks like in each frame (P = len(PALETTE))."""
    present: np.ndarray      # (T, P) bool: enough pixels of that colour
    centroids: np.ndarray    # (T, P, 2) float (y, x) in pixels; nan where absent
    shapes: np.ndarray       # (T, P) int index into SHAPES (best-matching template); -1 where absent
    areas: np.ndarray        # (T, P) int number of pixels of that colour


class Objects(NamedTuple):
    """A set of objects: palette colour and shape index of each (K,) int."""
    colours: np.ndarray
    shapes: np.ndarray


def detect_objects(video: torch.Tensor) -> Detections:
    """Find every palette colour in every frame of a (3, T, H, W) video in [-1, 1]."""
    if video.dim() != 4 or video.shape[0] != 3 or video.shape[2] != video.shape[3]:
        raise ValueError(f"video has shape {tuple(video.shape)}: expected (3, T, H, H)")
    resolution = video.shape[-1]
    pixels = (video.detach().float().cpu().permute(1, 2, 3, 0).numpy() + 1) * 127.5    # (T, H, W, 3) 0..255
    distance = np.linalg.norm(pixels[..., None, :] - PALETTE.astype(np.float32), axis=-1)   # (T, H, W, P)
    masks = (distance < COLOUR_TOLERANCE).transpose(0, 3, 1, 2)                        # (T, P, H, W)
    areas = masks.sum((2, 3))                                                           # (T, P)
    radius = object_radius(resolution)
    present = areas >= MIN_AREA * 2 * radius ** 2
    centre = np.arange(resolution, dtype=np.float32) + 0.5                              # pixel centres
    with np.errstate(invalid="ignore", divide="ignore"):                                # 0/0 -> nan when absent
        cy = (masks.sum(3) * centre).sum(2) / areas                                     # (T, P)
        cx = (masks.sum(2) * centre).sum(2) / areas
    centroids = np.where(present[..., None], np.stack([cy, cx], -1), np.nan)            # (T, P, 2)
    # shape = the renderer's template (placed at the centroid) that overlaps the pixels best (intersection/union)
    placed = np.nan_to_num(centroids, nan=-1e3)                                         # far away when absent
    scores = []
    for s in range(len(SHAPES)):
        template = shape_mask(placed, s, radius, resolution)                            # (T, P, H, W)
        overlap = (template & masks).sum((2, 3))
        scores.append(overlap / np.maximum((template | masks).sum((2, 3)), 1))
    shapes = np.where(present, np.argmax(np.stack(scores), 0), -1)                      # (T, P)
    return Detections(present, centroids, shapes, areas)


def reference_objects(reference, video: torch.Tensor, found: Detections | None = None) -> Objects:
    """The objects the video must keep showing: from a VideoTruth, an Objects set, a frame / video (its first
    frame's detections), or None (the video's own first frame; `found` = its detections, if already made)."""
    if isinstance(reference, VideoTruth):
        return Objects(np.asarray(reference.colours), np.asarray(reference.shapes))
    if isinstance(reference, Objects):
        return Objects(np.asarray(reference.colours, dtype=int), np.asarray(reference.shapes, dtype=int))
    if reference is None and found is not None:
        first = found
    else:
        frame = video[:, :1] if reference is None else reference
        first = detect_objects(frame.unsqueeze(1) if frame.dim() == 3 else frame[:, :1])   # (3, 1, H, W)
    colours = np.flatnonzero(first.present[0])
    return Objects(colours, first.shapes[0, colours])


def frame_persistence(video: torch.Tensor, reference=None, found: Detections | None = None) -> np.ndarray:
    """(T,) bool: every reference object present, same colour and shape (or excused by occlusion), nothing else.

    reference: the video's VideoTruth, an Objects set, a (3, H, W) frame or (3, T, H, W) video whose first frame
    lists the objects, or None for the video's own first frame. found: detect_objects(video), if already made."""
    lost, extra, _ = persistence_failures(video, reference, found)
    return ~lost & ~extra


def persistence_failures(video: torch.Tensor, reference=None, found: Detections | None = None):
    """Why frame_persistence fails: (lost (T,) bool: a reference object is missing or changed shape, unexcused;
    extra (T,) bool: a colour that is not a reference object's is present; reshaped (T,) bool, within lost: a lost
    object is in sight, its colour present in another shape). Arguments as frame_persistence."""
    found = detect_objects(video) if found is None else found
    colours, shapes = reference_objects(reference, video, found)
    extra = np.delete(found.present, colours, axis=1).any(1)                       # (T,) a colour not expected
    seen, hidden = kept_objects(found, colours, shapes, video.shape[-1])
    unkept = ~(seen | hidden)                                                      # (T, K)
    return unkept.any(1), extra, (unkept & found.present[:, colours]).any(1)


def kept_objects(found: Detections, colours: np.ndarray, shapes: np.ndarray,
                 resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Each object in each frame, for frame_persistence (which adds the check for other colours): (seen (T, K):
    present with its colour and shape, or with another shape while partly covered; hidden (T, K): out of sight
    behind another object, excused). An object's columns depend on its own shape only, not on the others'."""
    radius = object_radius(resolution)
    nominal = np.array([4, math.pi, 2])[shapes] * radius ** 2                      # (K,) square, circle, diamond area
    estimate = found.centroids[0, colours].copy()                                  # (K, 2) where each object is
    covered = np.zeros(len(colours), dtype=bool)       # last sighting was partly covered: it may vanish next
    hidden = np.zeros(len(colours), dtype=bool)
    was_seen = np.zeros(len(colours), dtype=bool)
    ok = np.zeros(found.present[:, colours].shape, dtype=bool)                     # (T, K) seen as it should be
    excused = np.zeros_like(ok)                                                    # (T, K) hidden behind another
    for t in range(len(ok)):
        seen = found.present[t, colours]                                           # (K,)
        right = found.shapes[t, colours] == shapes
        steady = seen & was_seen                           # only a centroid seen twice running is a real move
        moved = np.where(steady[:, None], found.centroids[t, colours] - estimate, 0.0)   # (K, 2)
        previous, estimate = estimate, np.where(seen[:, None], found.centroids[t, colours], estimate)
        gaps = np.nan_to_num(np.linalg.norm(estimate[:, None] - estimate[None], axis=-1), nan=np.inf)   # (K, K)
        np.fill_diagonal(gaps, np.inf)
        nearest = gaps.min(1, initial=np.inf)                                      # (K,) to the closest other object
        changed = seen & ~right & (nearest < TOUCH_DISTANCE * radius)              # partly covered by a neighbour
        # an object only vanishes behind another gradually: its last sighting was already partly covered
        hidden = ~seen & (hidden | covered) & (nearest < HIDE_DISTANCE * radius)
        if hidden.any():                                                           # it rides along with its occluder
            estimate = np.where(hidden[:, None], previous + moved[gaps.argmin(1)], estimate)
        area = found.areas[t, colours]
        # once an unseen object is neither riding behind a neighbour nor covered, it vanished: no later spell
        covered = np.where(seen, (area < COVERED_AREA * nominal) | ~right, covered & hidden)
        ok[t], excused[t], was_seen = (seen & right) | changed, hidden, seen
    # a hidden spell counts only if the object comes back (or the video ends soon after): a vanished object never does
    for k in range(len(colours)):
        start = None
        for t in range(len(ok) + 1):
            spell = t < len(ok) and excused[t, k]
            if spell and start is None:
                start = t
            elif not spell and start is not None:
                back = t < len(ok) and found.present[t, colours[k]]                  # it reappeared
                excused[start:t, k] = back or (t == len(ok) and t - start <= MAX_HIDDEN_AT_END)
                start = None
    return ok, excused


def isolated(found: Detections, resolution: int) -> np.ndarray:
    """(T, P) bool: that colour is seen, and no other colour's centroid is close enough to overlap it."""
    gaps = np.linalg.norm(found.centroids[:, :, None] - found.centroids[:, None], axis=-1)   # (T, P, P)
    gaps = np.nan_to_num(gaps, nan=np.inf)
    gaps[:, np.arange(len(PALETTE)), np.arange(len(PALETTE))] = np.inf
    return found.present & (gaps.min(2) >= TOUCH_DISTANCE * object_radius(resolution))


def frame_moves(video: torch.Tensor, found: Detections | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Judge every frame-to-frame centroid move of a colour with no other object close by (in both frames):
    (plausible (T, P), judged (T, P)) bool; row t is the move from frame t-1 to frame t (row 0 is never judged)."""
    found = detect_objects(video) if found is None else found
    resolution = video.shape[-1]
    alone = isolated(found, resolution)                                               # (T, P) nothing overlaps it
    judged = np.zeros_like(found.present)
    judged[1:] = alone[1:] & alone[:-1]
    step = np.zeros(found.present.shape)
    step[1:] = np.nan_to_num(np.linalg.norm(found.centroids[1:] - found.centroids[:-1], axis=-1))   # (T, P) pixels
    plausible = judged & (step <= max_speed(resolution) + MOTION_TOLERANCE)
    return plausible, judged


def per_window(values: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
    """Sum (T,) or (T, P) values per WINDOW frames and divide by the matching counts (nan where none)."""
    values = values.reshape(len(values), -1).sum(1).astype(float)
    counts = np.ones(len(values)) if counts is None else counts.reshape(len(counts), -1).sum(1)
    edges = np.arange(0, len(values), WINDOW)
    totals, weights = np.add.reduceat(values, edges), np.add.reduceat(counts, edges)
    with np.errstate(invalid="ignore"):
        return totals / weights


def object_persistence(video: torch.Tensor, reference=None, found: Detections | None = None) -> np.ndarray:
    """Per 16-frame window: fraction of frames passing frame_persistence (see there for `reference`)."""
    return per_window(frame_persistence(video, reference, found))


def motion_plausibility(video: torch.Tensor, found: Detections | None = None) -> np.ndarray:
    """Per 16-frame window: fraction of judged moves within the speed limit (nan: no move could be judged)."""
    plausible, judged = frame_moves(video, found)
    return per_window(plausible, judged)


# ------------------------------------------------------------------------------- reference-free and against truth

def modal_objects(video: torch.Tensor, found: Detections | None = None) -> Objects:
    """The video's own object set: every colour seen in at least MODAL_SHARE of its frames, each with the shape
    it is seen as in the most frames (kept_objects: partly covered sightings excused; hidden spells do not count,
    or a wrong shape, which looks "covered", would gain excuses where the object vanishes). On a tie, the shape it
    shows most while it stands alone (partly covered sightings look like other shapes), or if it never does, in its
    least covered sightings (area within 10% of its largest). A colour switching to another halfway puts both in
    the set: no frame holds it."""
    found = detect_objects(video) if found is None else found
    colours = np.flatnonzero(found.present.mean(0) >= MODAL_SHARE)
    alone = isolated(found, video.shape[-1])
    whole = [alone[:, c] if alone[:, c].any() else found.areas[:, c] >= 0.9 * found.areas[:, c].max() for c in colours]
    votes = np.stack([np.bincount(found.shapes[w, c], minlength=len(SHAPES)) for w, c in zip(whole, colours)]
                     ) if len(colours) else np.zeros((0, len(SHAPES)))                # (K, S) shapes seen whole
    kept = np.stack([kept_objects(found, colours, np.full(len(colours), s), video.shape[-1])[0].sum(0)
                     for s in range(len(SHAPES))], 1)                                # (K, S) frames seen per shape
    best = kept + 0.5 * (votes == votes.max(1, keepdims=True)) * (votes > 0)        # ties go to the alone mode
    return Objects(colours, best.argmax(1).astype(int))


def object_consistency(video: torch.Tensor, found: Detections | None = None) -> np.ndarray:
    """Per 16-frame window: fraction of frames holding exactly the video's modal objects (frame_persistence
    against modal_objects, occlusion excused as there). A video with no modal object scores 0: an empty video
    would keep "every" object trivially, and the generator always draws at least one."""
    found = detect_objects(video) if found is None else found
    objects = modal_objects(video, found)
    if len(objects.colours) == 0:
        return per_window(np.zeros(video.shape[1], dtype=bool))
    return object_persistence(video, objects, found)


class TrueTracks(NamedTuple):
    """Where detect_objects finds each true object when it is drawn alone, and where it is judged."""
    centroids: np.ndarray    # (T, K, 2) the centroid of its colour in a video of that object alone
    alone: np.ndarray        # (T, K) bool: no other object touches a pixel it touches (a correct video shows it whole)


def true_tracks(truth: VideoTruth) -> TrueTracks:
    """Render each object by itself and detect it: what a correct video shows where it stands alone. With the
    generator's own renderer (anti-aliased edges included) ground truth then scores exactly 0 px. Costs a render
    and a detection per object: compute once per truth and pass it to every trajectory_error of its videos."""
    background = render(replace(truth, positions=truth.positions[:, :0], colours=truth.colours[:0],
                                shapes=truth.shapes[:0], radius=truth.radius[:0], velocities=truth.velocities[:0]))
    centroids, touched = [], []
    for k in range(len(truth.colours)):
        alone = render(replace(truth, positions=truth.positions[:, k:k + 1], colours=truth.colours[k:k + 1],
                               shapes=truth.shapes[k:k + 1], radius=truth.radius[k:k + 1],
                               velocities=truth.velocities[k:k + 1]))                   # (3, T, H, W)
        centroids.append(detect_objects(alone).centroids[:, truth.colours[k]])        # (T, 2)
        touched.append((alone != background).any(0).numpy())                          # (T, H, W) any blend at all
    touched = np.stack(touched, 1) if touched else np.zeros((truth.frames, 0, 1, 1), dtype=bool)
    shared = (touched & (touched.sum(1, keepdims=True) > 1)).any((2, 3))             # (T, K) a pixel in common
    return TrueTracks(np.stack(centroids, 1) if centroids else np.zeros((truth.frames, 0, 2)), ~shared)


def trajectory_hits(video: torch.Tensor, truth: VideoTruth, found: Detections | None = None,
                    tracks: TrueTracks | None = None):
    """Each true object in each frame where it stands alone in the truth: is its colour seen with its shape, and
    how far is that colour's centroid from where the object is (true_tracks; `tracks` = true_tracks(truth))?

    Returns (errors (T, K) float pixels, nan unless a hit; hit (T, K) bool; judged (T, K) bool)."""
    found = detect_objects(video) if found is None else found
    tracks = true_tracks(truth) if tracks is None else tracks
    colours, shapes = np.asarray(truth.colours), np.asarray(truth.shapes)
    hit = tracks.alone & found.present[:, colours] & (found.shapes[:, colours] == shapes)   # (T, K)
    distance = np.linalg.norm(found.centroids[:, colours] - tracks.centroids, axis=-1)     # (T, K), nan if unseen
    return np.where(hit, distance, np.nan), hit, tracks.alone


def trajectory_error(video: torch.Tensor, truth: VideoTruth, found: Detections | None = None,
                     tracks: TrueTracks | None = None):
    """Per 16-frame window: (mean pixel error of the hits, share of judged sightings missed); nan where none.
    A missed object has no position to measure, so it counts in the miss rate and not in the error."""
    errors, hit, judged = trajectory_hits(video, truth, found, tracks)
    return per_window(np.nan_to_num(errors), hit), per_window(judged & ~hit, judged)


def object_histograms(objects: Objects) -> dict[str, np.ndarray]:
    """Histograms of one video's objects: its object count (one-hot over 0..len(PALETTE)), and how many of its
    objects have each colour and each shape. Summed over videos, they are the distributions diversity compares."""
    colours, shapes = np.asarray(objects.colours, dtype=int), np.asarray(objects.shapes, dtype=int)
    return dict(count=np.bincount([len(colours)], minlength=len(PALETTE) + 1),
                colour=np.bincount(colours, minlength=len(PALETTE)), shape=np.bincount(shapes, minlength=len(SHAPES)))


if __name__ == "__main__":
    video, truth = make_synthetic_video(0, frames=128, resolution=32)
    print("ground truth        persistence", np.round(object_persistence(video, truth), 2))
    print("ground truth        motion     ", np.round(motion_plausibility(video), 2))
    print("ground truth        consistency", np.round(object_consistency(video), 2))
    print("ground truth        trajectory ", np.round(trajectory_error(video, truth)[0], 2), "px")
    rest = slice(1, None)                                                             # every object but the first
    fewer = replace(truth, positions=truth.positions[:, rest], velocities=truth.velocities[rest],
                    colours=truth.colours[rest], shapes=truth.shapes[rest], radius=truth.radius[rest])
    removed = video.clone()
    removed[:, 64:] = render(fewer)[:, 64:]                                           # object 0 gone halfway
    print("object 0 removed    persistence", np.round(object_persistence(removed, truth), 2))
    print("object 0 removed    missed     ", np.round(trajectory_error(removed, truth)[1], 2))
