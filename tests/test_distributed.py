"""Data-parallel training (rnncore.distributed, issue 16): batch slicing in one process, then real
2-rank jobs under mpiexec over TCP loopback: the collectives, a 2-rank run ending where the
1-process run ends (with dropout, zoneout, recurrent dropout and word replacement too: masks are
keyed by an example's index in the global batch), an exact resume with dropout, and faults that
end the job instead of hanging.
The MPI tests are skipped when mpi4py or mpiexec is missing (pip install ".[mpi]")."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from rnncore import data
from rnncore import distributed as dist
from rnncore.cli import build_parser
from rnncore.tasks._common import Limited, SampledBatches

# ---- in one process ----------------------------------------------------------------------------


def test_local_slice_parts_are_disjoint_cover_and_balance():
    for n in range(0, 12):
        for size in range(1, 5):
            parts = [dist.local_slice(n, r, size) for r in range(size)]
            covered = [i for p in parts for i in range(n)[p]]
            assert covered == list(range(n))
            lens = [p.stop - p.start for p in parts]
            assert max(lens) - min(lens) <= 1
    with pytest.raises(ValueError, match="rank"):
        dist.local_slice(4, 2, 2)


def _ranks(batches, size):
    return [dist._shard(batches, r, size) for r in range(size)]


def test_sampled_batches_shard_cuts_every_batch_before_collation():
    lengths = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
    glob = SampledBatches(lengths, 4, lambda idx: idx.copy(), shuffle=True, seed=3)
    glob.set_epoch(2)
    whole = list(glob)
    per_rank = []
    for p in _ranks(glob, 3):  # in one process they share a sampler, whose epoch iteration moves
        p.set_epoch(2)
        per_rank.append(list(p))
    assert all(len(b) == len(whole) for b in per_rank)
    for step, batch in enumerate(whole):
        pieces = [b[step] for b in per_rank]
        got = np.concatenate([p for p in pieces if p is not None])
        np.testing.assert_array_equal(got, batch)  # disjoint, in order, nothing lost
        if len(batch) < 3:  # the last batch (11 = 4 + 4 + 3): every rank still gets an entry
            assert sum(p is None for p in pieces) == 3 - len(batch)
    assert glob.part == (0, 1)  # the original is untouched


def test_stream_batches_shard_by_columns_and_wrappers_are_copied():
    stream = data.BPTTBatches(np.arange(40).reshape(8, 5), 3)
    two = _ranks(Limited(stream, 2), 2)
    assert [len(p) for p in two] == [2, 2]
    for (x0, y0), (x1, y1), (x, y) in zip(*(list(p) for p in two), stream, strict=False):
        np.testing.assert_array_equal(np.concatenate([x0, x1], axis=1), x)
        np.testing.assert_array_equal(np.concatenate([y0, y1], axis=1), y)
        assert x0.flags.c_contiguous and x0.shape[1] == 3
    empty = dist._shard(stream, 5, 6)  # 5 columns for 6 ranks
    assert list(empty) == [None] * len(stream)
    with pytest.raises(TypeError, match="shard"):
        dist._shard([(np.zeros(3),)], 0, 2)


def test_map_slices_in_one_process_is_a_plain_map():
    assert dist.map_slices(lambda part: [2 * x for x in part], [1, 2, 3]) == [2, 4, 6]
    assert dist.map_slices(lambda part: [], []) == []


def test_single_process_world_and_reducer():
    world = dist.init(False)
    assert (world.rank, world.size) == (0, 1)
    assert dist.allreduce_sums({"a": 2, "b": 1.5}, world) == {"a": 2.0, "b": 1.5}
    assert dist.shard_batches([1, 2], world) == [1, 2]
    from rnncore import nn

    lin = nn.Linear(3, 2, seed=0)
    lin.parameters()[0].grad[...] = 1.0
    count, loss = dist.GradientReducer(lin, world).allreduce(4, 0.5)
    assert (count, loss) == (4.0, 0.5)
    np.testing.assert_allclose(lin.parameters()[0].grad, 1.0)


def test_launcher_detection_reads_the_environment_only():
    assert dist.launcher_world_size({}) == 1
    assert dist.launcher_world_size({"OMPI_COMM_WORLD_SIZE": "4"}) == 4
    assert dist.launcher_world_size({"PMI_SIZE": "2"}) == 2
    env = {k: v for k, v in os.environ.items() if k not in dist.LAUNCHER_SIZE_VARS}
    env.pop(dist.FORCE_ENV, None)
    code = (
        "import sys, rnncore, rnncore.train, rnncore.cli, rnncore.distributed as d;"
        "assert d.init().size == 1 and not d.is_distributed();"
        "assert 'mpi4py' not in sys.modules, 'mpi4py imported'"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


def test_no_distributed_option():
    parse = build_parser().parse_args
    common = ["train", "adding", "--out", "x"]
    assert parse(common).distributed is True
    assert parse(common + ["--no-distributed"]).distributed is False


def test_mpiexec_without_mpi4py_is_a_clear_error(monkeypatch, tmp_path, capsys):
    from rnncore.cli import main

    def no_mpi(*args):
        raise ImportError("No module named 'mpi4py'")

    monkeypatch.setattr(dist, "_world", None)
    monkeypatch.setattr(dist, "MPIWorld", no_mpi)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    code = main(["train", "adding", "--out", str(tmp_path / "run"), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "one of 2 started by an MPI launcher" in err and "rnncore[mpi]" in err
    assert "--no-distributed" in err and not (tmp_path / "run").exists()


# ---- real MPI jobs -----------------------------------------------------------------------------
BIN = os.path.dirname(sys.executable)
MPIEXEC = shutil.which("mpiexec", path=BIN + os.pathsep + os.environ.get("PATH", ""))
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or importlib.util.find_spec("mpi4py") is None,
    reason='needs mpi4py and mpiexec (pip install ".[mpi]")',
)
RNNCORE = [sys.executable, "-m", "rnncore"]
TIMEOUT = 120


def _mpi_env():
    env = dict(os.environ)
    env.update(
        RNNCORE_NUM_THREADS="1",
        # Open MPI: allowed as root (CI), over TCP on the loopback interface (the transport of a
        # real cluster, not shared memory), and more ranks than cores allowed
        OMPI_ALLOW_RUN_AS_ROOT="1",
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
        OMPI_MCA_pml="ob1",
        OMPI_MCA_btl="tcp,self",
        OMPI_MCA_btl_tcp_if_include="lo",
        OMPI_MCA_rmaps_base_oversubscribe="1",
        PRTE_MCA_rmaps_default_mapping_policy=":oversubscribe",
    )
    return env


def _mpirun(n, argv, **env):
    """``mpiexec -n n argv`` -> (exit status, stdout + stderr, seconds)."""
    start = time.perf_counter()
    proc = subprocess.run(
        [MPIEXEC, "-n", str(n), *argv],
        env={**_mpi_env(), **env},
        capture_output=True,
        timeout=TIMEOUT,
    )
    text = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    return proc.returncode, text, time.perf_counter() - start


def _train(n, task, out, opts):
    argv = [*RNNCORE, "train", task, "--out", str(out), "--no-progress", "--threads", "1", *opts]
    if n == 1:
        proc = subprocess.run(argv, env=_mpi_env(), capture_output=True, timeout=TIMEOUT)
        code, text = proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace")
    else:
        code, text, _ = _mpirun(n, argv)
    assert code == 0, text
    return json.loads((out / "metrics.json").read_text()), text


def _params(out):
    from rnncore.train import load_checkpoint

    ckpt = load_checkpoint(out / "checkpoint" / "last")
    return {n: p.data.copy() for n, p in ckpt.model.named_parameters()}


WORLD_SCRIPT = """
import json, sys
import numpy as np
from rnncore import distributed as dist, nn, optim
from rnncore.models import LanguageModel
from rnncore.train import Trainer

world = dist.init()
r = world.rank
out = {"rank": r, "size": world.size, "sums": dist.allreduce_sums({"n": r + 1, f"only{r}": 1})}
# broadcast: rank 1 starts from other weights
lin = nn.Linear(5, 3, seed=10 + r)
dist.broadcast_parameters(lin)
out["w"] = lin.parameters()[0].data.tolist()
# uneven slices: rank 0 averaged over 3 items, rank 1 over 1 item
for bucket_bytes in (1 << 20, 16):
    lin.zero_grad()
    for k, p in enumerate(lin.parameters()):
        p.grad[...] = (r + 1) * (k + 1)
    count, loss = dist.GradientReducer(lin, bucket_bytes=bucket_bytes).allreduce(
        [3, 1][r], [2.0, 6.0][r]
    )
    firsts = [p.grad.ravel()[0].item() for p in lin.parameters()]
    out[f"reduced{bucket_bytes}"] = [count, loss, firsts]
# the Trainer: rank 0's weights everywhere, the same dropout streams (masks are keyed by position)
model = LanguageModel(7, 4, 4, num_layers=2, dropout=0.5, seed=r)
Trainer(model, optim.SGD(model.parameters(), lr=0.1), log=None, progress=False)
out["lm_w"] = float(sum(float(p.data.sum()) for p in model.parameters()))
out["dropout_seed"] = int(model.rnn._dropout_seed)
# decoding a test set split across the ranks: each rank maps its part, all get the whole
out["mapped"] = dist.map_slices(lambda part: [(x, world.rank) for x in part], list(range(7)))
print("RESULT " + json.dumps(out), flush=True)
"""


@needs_mpi
def test_collectives_on_two_ranks(tmp_path):
    script = tmp_path / "world.py"
    script.write_text(textwrap.dedent(WORLD_SCRIPT))
    code, text, _ = _mpirun(2, [sys.executable, str(script)])
    assert code == 0, text
    res = sorted(
        (json.loads(line[7:]) for line in text.splitlines() if line.startswith("RESULT ")),
        key=lambda d: d["rank"],
    )
    assert [d["size"] for d in res] == [2, 2]
    assert res[0]["sums"] == res[1]["sums"] == {"n": 3.0, "only0": 1.0, "only1": 1.0}
    assert res[0]["w"] == res[1]["w"]
    for key in ("reduced1048576", "reduced16"):  # one bucket, and one per parameter
        for d in res:
            count, loss, grads = d[key]
            assert count == 4.0 and loss == pytest.approx((3 * 2.0 + 6.0) / 4)
            # (3 * 1 + 1 * 2) / 4 = 1.25 times the parameter's (k + 1)
            assert grads == pytest.approx([1.25, 2.5])
    assert res[0]["lm_w"] == res[1]["lm_w"]
    assert res[0]["dropout_seed"] == res[1]["dropout_seed"]
    want = [[x, 0 if x < 4 else 1] for x in range(7)]  # rank 0 maps items 0-3, rank 1 4-6
    assert res[0]["mapped"] == res[1]["mapped"] == want


ADDING = (
    "--epochs 2 --hidden 8 --steps 10 --train-size 205 --valid-size 51 --test-size 50 "
    "--batch-size 25 --seed 4"
).split()  # 205 = 8 batches of 25 + one of 5: slices of 13/12 and 3/2 items


@needs_mpi
def test_two_ranks_end_where_one_process_ends(tmp_path):
    one, _ = _train(1, "adding", tmp_path / "one", ADDING)
    two, text = _train(2, "adding", tmp_path / "two", ADDING)
    assert two["world_size"] == 2 and one["world_size"] == 1
    p1, p2 = _params(tmp_path / "one"), _params(tmp_path / "two")
    for name in p1:
        np.testing.assert_allclose(p2[name], p1[name], rtol=0, atol=2e-6, err_msg=name)
    for h1, h2 in zip(one["history"], two["history"], strict=True):
        for key in ("train_loss", "val_loss", "grad_norm"):
            assert h2[key] == pytest.approx(h1[key], rel=1e-5), key
        assert h2["allreduce_seconds"] >= 0
    assert two["test"]["loss"] == pytest.approx(one["test"]["loss"], rel=1e-5)
    # rank 0 alone prints and writes: each line once
    assert text.count("epoch 2/2") == 1
    log = (tmp_path / "two" / "train.log").read_text().splitlines()
    assert sum(line.startswith("epoch 1/2") for line in log) == 1
    # a user error on rank 0 (the folder holds a run) ends every rank with status 2
    code, text, seconds = _mpirun(
        2, [*RNNCORE, "train", "adding", "--out", str(tmp_path / "two"), *ADDING]
    )
    assert code == 2 and "rank 0 of 2" in text and "--overwrite" in text, text


def _ptb(tmp_path):
    d = tmp_path / "ptb"
    d.mkdir()
    for i, split in enumerate(("train", "valid", "test")):
        sents = data.anbn(200 if split == "train" else 40, max_n=4, seed=i)
        (d / f"ptb.{split}.txt").write_text("\n".join(" ".join(s) for s in sents) + "\n")
    return d


@needs_mpi
def test_language_model_columns_and_exact_resume_with_dropout(tmp_path):
    opts = (
        f"--data {_ptb(tmp_path)} --hidden 12 --embed 12 --layers 2 --batch-size 5 --bptt 8 "
        "--eval-batch-size 3 --optimizer sgd --lr 1 --epochs 2"
    ).split()
    # dropout 0: 2 ranks x (3, 2) stream columns against 1 process x 5 columns
    one, _ = _train(1, "lm", tmp_path / "one", [*opts, "--dropout", "0"])
    two, _ = _train(2, "lm", tmp_path / "two", [*opts, "--dropout", "0"])
    p1, p2 = _params(tmp_path / "one"), _params(tmp_path / "two")
    for name in p1:
        np.testing.assert_allclose(p2[name], p1[name], rtol=0, atol=1e-5, err_msg=name)
    assert two["valid"]["loss"] == pytest.approx(one["valid"]["loss"], rel=1e-5)
    # dropout between and around the layers, zoneout, recurrent dropout: an example's masks do
    # not depend on the number of ranks, so 2 ranks still end where 1 process ends
    drop = [*opts, "--zoneout", "0.1", "--recurrent-dropout", "0.2", "--dropout", "0.3"]
    full, _ = _train(2, "lm", tmp_path / "full", drop)
    alone, _ = _train(1, "lm", tmp_path / "alone", drop)
    pf, pa = _params(tmp_path / "full"), _params(tmp_path / "alone")
    for name in pf:
        np.testing.assert_allclose(pf[name], pa[name], rtol=0, atol=1e-5, err_msg=name)
    assert full["valid"]["loss"] == pytest.approx(alone["valid"]["loss"], rel=1e-5)
    # 2 epochs straight, or 1 epoch then --resume: the same run, bit for bit
    _train(2, "lm", tmp_path / "res", [*drop[:-2], "--dropout", "0.3", "--epochs", "1"])
    resumed, text = _train(2, "lm", tmp_path / "res", [*drop, "--resume"])
    assert "resumed from" in text
    pf, pr = _params(tmp_path / "full"), _params(tmp_path / "res")
    for name in pf:
        np.testing.assert_array_equal(pr[name], pf[name], err_msg=name)
    assert resumed["valid"] == full["valid"]


def _conll(tmp_path, sizes=(201, 40, 40)):
    d = tmp_path / "conll"
    d.mkdir()
    for i, (split, n) in enumerate(zip(("train", "valid", "test"), sizes, strict=True)):
        lines = ["-DOCSTART- -X- -X- O", ""]
        for toks, tags in data.synthetic_tagging(n, seed=i):
            lines += [f"{w} NN I-NP {t}" for w, t in zip(toks, tags, strict=True)] + [""]
        (d / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return d


@needs_mpi
def test_tagger_with_dropout_word_replacement_and_an_empty_slice(tmp_path):
    # 201 sentences in batches of 8: the last global batch holds one sentence, so rank 1's
    # slice is empty and its layers run no forward; the Trainer then hands it rank 0's random
    # state, and the second epoch's masks still agree with one process's
    opts = (
        f"--data {_conll(tmp_path)} --hidden 10 --embed 8 --char-embed 4 --char-hidden 4 "
        "--batch-size 8 --epochs 2 --dropout 0.5 --unk-replace 0.5 --layers 2 --seed 3"
    ).split()
    one, _ = _train(1, "tagger", tmp_path / "one", opts)
    two, _ = _train(2, "tagger", tmp_path / "two", opts)
    p1, p2 = _params(tmp_path / "one"), _params(tmp_path / "two")
    for name in p1:
        np.testing.assert_allclose(p2[name], p1[name], rtol=0, atol=1e-5, err_msg=name)
    for h1, h2 in zip(one["history"], two["history"], strict=True):
        assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=1e-5)


FAULT_SCRIPT = """
import os, sys
from rnncore import distributed as dist
world = dist.init()
if world.rank == 1:
    how = sys.argv[1]
    if how == "raise":
        raise RuntimeError("rank one fails on purpose")
    if how == "die":
        os._exit(3)
    sys.exit(0)  # "exit": leaves quietly while rank 0 waits in a collective
dist.allreduce_sums({"x": 1.0})
print("rank 0 finished", flush=True)
"""


@needs_mpi
@pytest.mark.parametrize("how", ["raise", "exit", "die"])
def test_a_failing_rank_ends_the_job_naming_itself(tmp_path, how):
    script = tmp_path / "fault.py"
    script.write_text(textwrap.dedent(FAULT_SCRIPT))
    code, text, seconds = _mpirun(
        2, [sys.executable, str(script), how], RNNCORE_MPI_EXIT_TIMEOUT="3"
    )
    assert code != 0, text
    assert "rank 0 finished" not in text
    assert seconds < 60
    if how == "raise":
        assert "rank 1 of 2 failed with RuntimeError: rank one fails on purpose" in text, text
    elif how == "exit":
        assert "rank 1 of 2: exiting" in text and "rank 1 left early" in text, text


def test_a_malformed_force_variable_is_named(monkeypatch):
    """$RNNCORE_DISTRIBUTED=yes was silently ignored (only 0 and 1 mean anything)."""
    monkeypatch.setattr(dist, "_world", None)
    monkeypatch.setenv(dist.FORCE_ENV, "yes")
    with pytest.raises(ValueError, match=r"RNNCORE_DISTRIBUTED must be 0 \(no MPI\) or 1"):
        dist.init()
