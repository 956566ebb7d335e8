"""Synthetic scenes for captioning: small rendered images of two coloured shapes and their caption.

Each image is ``size`` x ``size`` x 3 (float32 in [0, 1], default 16 x 16) on a 2 x 2 grid of
cells; two shapes sit in neighbouring cells, one above the other or side by side, each with a
random colour, shape, position (jitter of one pixel) and brightness, plus pixel noise. The
caption comes from a small grammar that names the upper (or left) shape first, so every image
has exactly one::

    a red circle above a blue square
    a green triangle to the left of a yellow circle

Also the features/captions file pair of the ``caption`` task: a ``.npy`` array [N, F] and a text
file with one caption per line, aligned by line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._io import DataFormatError, PathLike, existing_file, read_lines
from .text import tokenize

COLOURS = {
    "red": (1.0, 0.1, 0.1),
    "green": (0.1, 0.9, 0.1),
    "blue": (0.15, 0.25, 1.0),
    "yellow": (1.0, 0.9, 0.1),
}
SHAPES = ("circle", "square", "triangle")
RELATIONS = ("above", "to the left of")


@dataclass
class Scenes:
    """A synthetic scenes dataset.

    Attributes:
        images: float32 [N, size, size, 3] in [0, 1].
        captions: N captions as token lists (e.g. ["a", "red", "circle", "above", ...]).
        attributes: int64 [N, 5]: colour, shape of the first and the second object, relation
            (indices into :data:`COLOURS`, :data:`SHAPES`, :data:`RELATIONS`).
    """

    images: np.ndarray
    captions: list[list[str]]
    attributes: np.ndarray

    def features(self, kind: str = "pixels") -> np.ndarray:
        """Fixed features of the images, see :func:`scene_features`."""
        return scene_features(self.images, kind)


def _mask(shape: str, s: int) -> np.ndarray:
    """Boolean s x s mask of a filled shape."""
    yy, xx = np.mgrid[0:s, 0:s]
    if shape == "square":
        return np.ones((s, s), dtype=bool)
    if shape == "circle":
        c = (s - 1) / 2.0
        return (yy - c) ** 2 + (xx - c) ** 2 <= (s / 2.0) ** 2 - 0.25
    # triangle with its apex at the top: row r spans the middle (r + 1) / s of the width
    half = (yy + 1) * (s / 2.0) / s
    return np.abs(xx - (s - 1) / 2.0) <= half - 0.25


def caption_of(colour1: str, shape1: str, relation: str, colour2: str, shape2: str) -> list[str]:
    """The grammar: "a <colour> <shape> <relation> a <colour> <shape>" as tokens."""
    return ["a", colour1, shape1, *relation.split(), "a", colour2, shape2]


def synthetic_scenes(
    n: int, *, size: int = 16, noise: float = 0.05, seed: int | np.random.Generator = 0
) -> Scenes:
    """Render n random scenes with their captions (no download; deterministic for a seed).

    Args:
        n: number of scenes (>= 1).
        size: image side in pixels, even, >= 12 (each grid cell is size/2).
        noise: standard deviation of the Gaussian pixel noise (values are clipped to [0, 1]).
        seed: int seed or a numpy Generator.
    Returns:
        :class:`Scenes`.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"synthetic_scenes: n must be an integer >= 1, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 12 or size % 2:
        raise ValueError(f"synthetic_scenes: size must be an even integer >= 12, got {size!r}")
    if not noise >= 0:
        raise ValueError(f"synthetic_scenes: noise must be >= 0, got {noise!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    cell = size // 2
    colours = list(COLOURS)
    images = np.zeros((n, size, size, 3), dtype=np.float32)
    attrs = np.zeros((n, 5), dtype=np.int64)
    captions = []
    s = cell - 1  # one size: at 16 x 16 a smaller circle is hard to tell from a square
    masks = {sh: _mask(sh, s) for sh in SHAPES}
    for i in range(n):
        rel = int(rng.integers(len(RELATIONS)))
        line = int(rng.integers(2))  # which column (above) or row (left of)
        cells = [(0, line), (1, line)] if rel == 0 else [(line, 0), (line, 1)]
        objs = []
        for row, col in cells:
            c = int(rng.integers(len(colours)))
            sh = int(rng.integers(len(SHAPES)))
            y0 = row * cell + int(rng.integers(0, cell - s + 1))
            x0 = col * cell + int(rng.integers(0, cell - s + 1))
            bright = rng.uniform(0.75, 1.0)
            m = masks[SHAPES[sh]]
            patch = images[i, y0 : y0 + s, x0 : x0 + s]
            patch[m] = np.asarray(COLOURS[colours[c]], dtype=np.float32) * bright
            objs.append((c, sh))
        (c1, s1), (c2, s2) = objs
        attrs[i] = (c1, s1, c2, s2, rel)
        captions.append(
            caption_of(colours[c1], SHAPES[s1], RELATIONS[rel], colours[c2], SHAPES[s2])
        )
    if noise:
        images += rng.normal(0.0, noise, size=images.shape).astype(np.float32)
        np.clip(images, 0.0, 1.0, out=images)
    return Scenes(images, captions, attrs)


def scene_features(images: np.ndarray, kind: str = "pixels") -> np.ndarray:
    """Fixed (not learned) features of images [N, S, S, 3].

    Args:
        kind: "pixels" -- the flattened pixels, F = S*S*3; "pooled" -- 2 x 2 average pooling,
            then flattened, F = (S/2)*(S/2)*3.
    Returns:
        float32 [N, F].
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"scene_features: images must be [N, S, S, 3], got {x.shape}")
    if kind == "pixels":
        return x.reshape(x.shape[0], -1).copy()
    if kind == "pooled":
        n, h, w, c = x.shape
        x = x[:, : h - h % 2, : w - w % 2]
        pooled = x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
        return pooled.reshape(n, -1).astype(np.float32)
    raise ValueError(f"scene_features: kind must be 'pixels' or 'pooled', got {kind!r}")


def write_caption_data(
    directory: PathLike, features: np.ndarray, captions: list[list[str]], *, prefix: str = "train"
) -> tuple[Path, Path]:
    """Write ``<prefix>.features.npy`` [N, F] and ``<prefix>.captions.txt`` (one per line).

    Returns:
        (features path, captions path).
    """
    feats = np.asarray(features)
    if feats.ndim != 2 or feats.shape[0] != len(captions):
        raise ValueError(
            f"write_caption_data: features must be [N={len(captions)}, F], got {feats.shape}"
        )
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    fp, cp = d / f"{prefix}.features.npy", d / f"{prefix}.captions.txt"
    np.save(fp, feats)
    with open(cp, "w", encoding="utf-8", newline="\n") as f:
        for tokens in captions:
            f.write(" ".join(tokens) + "\n")
    return fp, cp


def read_caption_data(
    features_path: PathLike, captions_path: PathLike, *, lower: bool = True
) -> tuple[np.ndarray, list[list[str]]]:
    """A features array and its captions, aligned by line.

    Args:
        features_path: ``.npy`` file holding a 2-D numeric array [N, F] (row i is example i).
        captions_path: UTF-8 text (.gz aware), one caption per line: line i describes row i.
        lower: lower-case the captions before tokenizing (:func:`~rnncore.data.tokenize`).
    Returns:
        (features float32 [N, F], N token lists).
    Raises:
        DataFormatError: features not a 2-D numeric .npy array; an empty caption (naming its
            line); a number of captions other than N (naming both files).
    """
    fpath = existing_file(features_path, "read_caption_data")
    try:
        feats = np.load(fpath, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataFormatError(fpath, None, f"not a .npy array ({e})") from None
    if feats.ndim != 2 or feats.dtype.kind not in "iuf":
        raise DataFormatError(
            fpath, None, f"expected a 2-D numeric array [N, F], got {feats.dtype} {feats.shape}"
        )
    if not np.all(np.isfinite(feats)):
        row = int(np.argwhere(~np.isfinite(feats))[0, 0])
        raise DataFormatError(fpath, None, f"row {row} holds a NaN or infinite value")
    lines = read_lines(captions_path, "read_caption_data")
    if len(lines) != feats.shape[0]:
        raise DataFormatError(
            captions_path,
            None,
            f"{len(lines)} captions but {os.fspath(features_path)} has {feats.shape[0]} rows; "
            "they must be aligned by line",
        )
    captions = []
    for n, line in enumerate(lines, 1):
        tokens = tokenize(line, lower=lower)
        if not tokens:
            raise DataFormatError(captions_path, n, "empty caption")
        captions.append(tokens)
    return feats.astype(np.float32, copy=False), captions
