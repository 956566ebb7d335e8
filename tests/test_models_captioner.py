"""Captioner: exact gradients into the feature-to-state layers, greedy == beam of width 1, a small
model learns synthetic scenes, and the caption task end to end."""

import json

import numpy as np
import pytest
import rnncore
from rnncore import optim
from rnncore.cli import main as cli_main
from rnncore.data import Vocab, synthetic_scenes
from rnncore.models import Captioner, build

EPS, ATOL, RTOL = 1e-6, 1e-7, 1e-5


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = rnncore.set_num_threads(1)
    yield
    rnncore.set_num_threads(before)


def gradcheck(model, batch, per_param=6, seed=0):
    model.zero_grad()
    model.training_step(batch)
    rng = np.random.default_rng(seed)

    def loss():
        model.eval()
        value = model._loss(batch)[0]
        model.train()
        return value

    for name, p in model.named_parameters():
        flat, grad = p.data.reshape(-1), p.grad.reshape(-1).copy()
        for i in rng.choice(flat.size, size=min(per_param, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + EPS
            up = loss()
            flat[i] = old - EPS
            down = loss()
            flat[i] = old
            numeric = (up - down) / (2 * EPS)
            assert abs(numeric - grad[i]) <= ATOL + RTOL * abs(grad[i]), (name, i, numeric, grad[i])


@pytest.mark.parametrize(
    "config",
    [
        dict(cell="lstm"),
        dict(cell="gru", num_layers=2, feed_features=True),
        dict(cell="lstm", num_layers=2, feed_features=True),
        dict(cell="rnn"),
    ],
    ids=str,
)
def test_gradients_match_finite_differences(config):
    model = Captioner(5, 9, embed_dim=3, hidden_size=4, dtype="float64", seed=1, **config)
    feats = np.random.default_rng(0).normal(size=(3, 5))
    batch = model.make_batch(feats, [[4, 5], [6, 7, 8], []])
    gradcheck(model, batch)
    assert np.abs(model.init_h.weight.grad).max() > 1e-4  # the state gradient reaches f -> h0


def test_make_batch_checks_the_feature_shape():
    model = Captioner(5, 9, embed_dim=3, hidden_size=4)
    with pytest.raises(ValueError, match=r"features must be \[B=2, F=5\]"):
        model.make_batch(np.zeros((2, 4)), [[4], [5]])


@pytest.fixture(scope="module")
def scenes_model():
    """A captioner trained for 3 epochs on 3000 synthetic scenes (about 2 s)."""
    tr = synthetic_scenes(3000, seed=0)
    vocab = Vocab.build(tr.captions, bos=True, eos=True)
    feats = tr.features("pixels")
    ids = [vocab.encode(c) for c in tr.captions]
    model = Captioner(
        feats.shape[1],
        len(vocab),
        embed_dim=16,
        hidden_size=64,
        seed=0,
        padding_idx=vocab.pad_id,
        bos_id=vocab.bos_id,
        eos_id=vocab.eos_id,
    )
    opt = optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(3):
        perm = rng.permutation(len(ids))
        for i in range(0, len(ids), 32):
            idx = perm[i : i + 32]
            opt.zero_grad()
            model.training_step(model.make_batch(feats[idx], [ids[j] for j in idx]))
            optim.clip_grad_norm(model.parameters(), 5.0)
            opt.step()
    return model, vocab


def test_small_model_captions_held_out_scenes(scenes_model):
    model, vocab = scenes_model
    te = synthetic_scenes(200, seed=99)
    out = model.caption(te.features("pixels"))
    exact = np.mean([vocab.decode(o) == c for o, c in zip(out, te.captions, strict=True)])
    assert exact >= 0.9, exact  # stated level: 90% exactly right after 3 short epochs


def test_beam_width_one_equals_greedy(scenes_model):
    model, _ = scenes_model
    feats = synthetic_scenes(30, seed=7).features("pixels")
    greedy = model.caption(feats)
    assert [model.beam_search(f, 1)[0] for f in feats] == greedy
    untrained = Captioner(
        feats.shape[1], 20, embed_dim=8, hidden_size=16, feed_features=True, cell="gru", seed=3
    )
    assert [untrained.beam_search(f, 1, max_len=9)[0] for f in feats] == untrained.caption(
        feats, max_len=9
    )


def test_config_rebuilds_the_model():
    model = Captioner(6, 9, embed_dim=3, hidden_size=4, feed_features=True)
    twin = build("captioner", model.config())
    twin.load_state_dict(model.state_dict())
    f = np.ones((2, 6), dtype=np.float32)
    assert twin.caption(f, max_len=4) == model.caption(f, max_len=4)


def test_caption_task_on_synthetic_scenes_and_on_files(tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli_main(
        [
            "train",
            "caption",
            "--out",
            str(out),
            "--scenes",
            "600",
            "--epochs",
            "1",
            "--hidden",
            "32",
            "--write-scenes",
            str(tmp_path / "scenes"),
            "--no-progress",
        ]
    )
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "caption" and 0.0 <= metrics["test_exact_match"] <= 1.0
    assert (tmp_path / "scenes" / "train.features.npy").is_file()
    rc = cli_main(
        [
            "train",
            "caption",
            "--data",
            str(tmp_path / "scenes"),
            "--out",
            str(tmp_path / "run2"),
            "--epochs",
            "1",
            "--hidden",
            "16",
            "--beam",
            "2",
            "--feed-features",
            "--no-progress",
        ]
    )
    assert rc == 0
    (tmp_path / "scenes" / "valid.captions.txt").write_text("a red circle\n")
    capsys.readouterr()
    rc = cli_main(
        ["train", "caption", "--data", str(tmp_path / "scenes"), "--out", str(tmp_path / "run3")]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "valid.captions.txt: 1 captions but" in err and "valid.features.npy has 60 rows" in err
