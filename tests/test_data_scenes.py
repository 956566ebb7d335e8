"""Synthetic scenes (images + grammar captions) and the features/captions file pair."""

import numpy as np
import pytest
from rnncore.data import (
    DataFormatError,
    read_caption_data,
    scene_features,
    synthetic_scenes,
    write_caption_data,
)
from rnncore.data.scenes import COLOURS, RELATIONS, SHAPES, caption_of


def test_scenes_are_deterministic_and_captions_follow_the_grammar():
    a, b = synthetic_scenes(50, seed=3), synthetic_scenes(50, seed=3)
    assert np.array_equal(a.images, b.images) and a.captions == b.captions
    assert a.images.shape == (50, 16, 16, 3) and a.images.dtype == np.float32
    assert a.images.min() >= 0.0 and a.images.max() <= 1.0
    colours = list(COLOURS)
    for caption, (c1, s1, c2, s2, rel) in zip(a.captions, a.attributes, strict=True):
        assert caption == caption_of(
            colours[c1], SHAPES[s1], RELATIONS[rel], colours[c2], SHAPES[s2]
        )
    assert " ".join(a.captions[0]).startswith("a ")
    assert not np.array_equal(a.images, synthetic_scenes(50, seed=4).images)


def test_the_first_named_shape_is_above_or_left_of_the_second():
    sc = synthetic_scenes(40, noise=0.0, seed=1)
    for img, (_, _, _, _, rel) in zip(sc.images, sc.attributes, strict=True):
        ys, xs = np.nonzero(img.max(axis=-1) > 0.3)
        if rel == 0:  # above: the two shapes lie in the top and the bottom half
            assert ys.min() < 8 <= ys.max()
        else:
            assert xs.min() < 8 <= xs.max()


def test_features():
    sc = synthetic_scenes(4, seed=0)
    assert scene_features(sc.images).shape == (4, 768)
    pooled = sc.features("pooled")
    assert pooled.shape == (4, 192)
    assert pooled[0, 0] == pytest.approx(sc.images[0, :2, :2, 0].mean())
    with pytest.raises(ValueError, match="kind must be"):
        scene_features(sc.images, "edges")
    with pytest.raises(ValueError, match="size must be an even integer"):
        synthetic_scenes(3, size=15)


def test_caption_files_round_trip(tmp_path):
    sc = synthetic_scenes(5, seed=0)
    fp, cp = write_caption_data(tmp_path, sc.features(), sc.captions, prefix="test")
    feats, caps = read_caption_data(fp, cp)
    assert np.array_equal(feats, sc.features()) and caps == sc.captions


def test_caption_files_errors_name_the_files_and_line(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((3, 4)))
    (tmp_path / "c.txt").write_text("a red circle\na blue square\n")
    with pytest.raises(ValueError, match=r"c\.txt: 2 captions but .*f\.npy has 3 rows"):
        read_caption_data(tmp_path / "f.npy", tmp_path / "c.txt")
    (tmp_path / "c.txt").write_text("a red circle\n  \na blue square\n")
    with pytest.raises(DataFormatError, match=r"c\.txt, line 2: empty caption"):
        read_caption_data(tmp_path / "f.npy", tmp_path / "c.txt")
    np.save(tmp_path / "g.npy", np.zeros(3))
    with pytest.raises(DataFormatError, match=r"g\.npy: expected a 2-D numeric array"):
        read_caption_data(tmp_path / "g.npy", tmp_path / "c.txt")
    (tmp_path / "h.npy").write_text("not numpy")
    with pytest.raises(DataFormatError, match=r"h\.npy: not a \.npy array"):
        read_caption_data(tmp_path / "h.npy", tmp_path / "c.txt")
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        read_caption_data(tmp_path / "missing.npy", tmp_path / "c.txt")
