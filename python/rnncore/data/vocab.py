"""Token <-> id vocabulary with special tokens, deterministic construction and JSON round trips."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ._io import PathLike

PAD = "<pad>"
UNK = "<unk>"
BOS = "<bos>"
EOS = "<eos>"

_ROLES = ("pad", "unk", "bos", "eos")
_DEFAULT_TOKEN = {"pad": PAD, "unk": UNK, "bos": BOS, "eos": EOS}
_FORMAT = "rnncore.data.Vocab"


class Vocab:
    """A fixed list of tokens; a token's id is its position.

    Special tokens have roles: ``pad`` (padding), ``unk`` (stands for any unknown token), ``bos``
    and ``eos`` (begin / end of sequence). A vocabulary without ``unk`` rejects unknown tokens
    (useful for labels). :meth:`build` puts the specials first, in the order pad, unk, bos, eos,
    so ``<pad>`` is id 0 whenever it is present.

    Args:
        tokens: the tokens in id order, no duplicates.
        pad, unk, bos, eos: the token playing each role (must be in ``tokens``), or None.
    """

    def __init__(
        self,
        tokens: Iterable[str],
        *,
        pad: str | None = None,
        unk: str | None = None,
        bos: str | None = None,
        eos: str | None = None,
    ):
        itos = list(tokens)
        stoi: dict[str, int] = {}
        for i, tok in enumerate(itos):
            if not isinstance(tok, str):
                raise TypeError(f"Vocab: tokens must be str, got {type(tok).__name__} at id {i}")
            if tok in stoi:
                raise ValueError(f"Vocab: duplicate token {tok!r} at ids {stoi[tok]} and {i}")
            stoi[tok] = i
        self._itos = itos
        self._stoi = stoi
        self._roles: dict[str, str] = {}
        for role, tok in zip(_ROLES, (pad, unk, bos, eos), strict=True):
            if tok is None:
                continue
            if tok not in stoi:
                raise ValueError(f"Vocab: {role} token {tok!r} is not among the tokens")
            self._roles[role] = tok

    @classmethod
    def build(
        cls,
        sequences: Iterable[Iterable[str]],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        pad: bool = True,
        unk: bool = True,
        bos: bool = False,
        eos: bool = False,
    ) -> Vocab:
        """Vocabulary of the tokens in ``sequences``.

        Order: the specials that are switched on (``<pad>``, ``<unk>``, ``<bos>``, ``<eos>``, in
        that order), then the other tokens by decreasing count, ties broken by first occurrence in
        ``sequences`` (so the result depends only on the data and its order). A special's own
        spelling found in the data (PTB's ``<unk>`` and ``<eos>``) maps to the special entry.

        Args:
            sequences: iterable of token sequences (a str is a sequence of characters).
            min_freq: tokens seen fewer times are left out (they become ``<unk>``).
            max_size: at most this many entries in all, specials included; the most frequent
                tokens are kept. None: no limit.
            pad, unk, bos, eos: include ``<pad>`` / ``<unk>`` / ``<bos>`` / ``<eos>``.
        """
        if isinstance(min_freq, bool) or not isinstance(min_freq, int) or min_freq < 1:
            raise ValueError(f"Vocab.build: min_freq must be an integer >= 1, got {min_freq!r}")
        flags = {"pad": pad, "unk": unk, "bos": bos, "eos": eos}
        specials = [_DEFAULT_TOKEN[r] for r in _ROLES if flags[r]]
        if max_size is not None and (
            isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < len(specials)
        ):
            raise ValueError(
                f"Vocab.build: max_size must be an integer >= {len(specials)} (the number of "
                f"specials), got {max_size!r}"
            )
        if isinstance(sequences, str):
            raise TypeError("Vocab.build: sequences must be an iterable of sequences, got a str")
        counts: Counter[str] = Counter()
        for seq in sequences:
            counts.update(seq)
        for s in specials:
            counts.pop(s, None)
        # sorted() is stable and Counter keeps first-occurrence order: ties stay in data order.
        ordered = [t for t, c in sorted(counts.items(), key=lambda kv: -kv[1]) if c >= min_freq]
        if max_size is not None:
            ordered = ordered[: max_size - len(specials)]
        roles = {r: _DEFAULT_TOKEN[r] for r in _ROLES if flags[r]}
        return cls(specials + ordered, **roles)

    # ---- lookups -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token: object) -> bool:
        return token in self._stoi

    def __iter__(self):
        return iter(self._itos)

    def __getitem__(self, token: str) -> int:
        """Id of ``token`` (``<unk>``'s id for an unknown token; ValueError without ``<unk>``)."""
        return self.index(token)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self._itos == other._itos and self._roles == other._roles

    def __repr__(self) -> str:
        roles = ", ".join(f"{r}={t!r}" for r, t in self._roles.items())
        return f"Vocab(size={len(self)}{', ' if roles else ''}{roles})"

    @property
    def itos(self) -> list[str]:
        """Tokens in id order (a copy)."""
        return list(self._itos)

    @property
    def stoi(self) -> Mapping[str, int]:
        """Read-only token -> id mapping."""
        return MappingProxyType(self._stoi)

    @property
    def specials(self) -> dict[str, str]:
        """Role -> token for the roles present, e.g. {"pad": "<pad>", "unk": "<unk>"}."""
        return dict(self._roles)

    def _role_id(self, role: str) -> int | None:
        tok = self._roles.get(role)
        return None if tok is None else self._stoi[tok]

    @property
    def pad_id(self) -> int | None:
        """Id of the padding token, or None."""
        return self._role_id("pad")

    @property
    def unk_id(self) -> int | None:
        """Id of the unknown-token token, or None."""
        return self._role_id("unk")

    @property
    def bos_id(self) -> int | None:
        """Id of the begin-of-sequence token, or None."""
        return self._role_id("bos")

    @property
    def eos_id(self) -> int | None:
        """Id of the end-of-sequence token, or None."""
        return self._role_id("eos")

    def index(self, token: str) -> int:
        """Id of one token; unknown -> ``<unk>``'s id, or ValueError when there is no ``<unk>``."""
        i = self._stoi.get(token)
        if i is not None:
            return i
        if "unk" in self._roles:
            return self._stoi[self._roles["unk"]]
        raise ValueError(f"Vocab: token {token!r} is not in the vocabulary (which has no <unk>)")

    def token(self, i: int) -> str:
        """Token with id ``i`` (IndexError naming the id when out of range)."""
        if not 0 <= i < len(self._itos):
            raise IndexError(f"Vocab: id {i} out of range [0, {len(self._itos)})")
        return self._itos[int(i)]

    def encode(
        self, tokens: Iterable[str], *, add_bos: bool = False, add_eos: bool = False
    ) -> np.ndarray:
        """Ids of a token sequence.

        Args:
            tokens: the tokens (a str is encoded character by character).
            add_bos, add_eos: put ``<bos>`` first / ``<eos>`` last (ValueError if absent).
        Returns:
            int64 array [len(tokens) (+1 per added special)].
        """
        ids = []
        if add_bos:
            ids.append(self._required("bos", "add_bos"))
        stoi, unk = self._stoi, self.unk_id
        for pos, tok in enumerate(tokens):
            i = stoi.get(tok)
            if i is None:
                if unk is None:
                    raise ValueError(
                        f"Vocab.encode: token {tok!r} at position {pos} is not in the vocabulary "
                        "(which has no <unk>)"
                    )
                i = unk
            ids.append(i)
        if add_eos:
            ids.append(self._required("eos", "add_eos"))
        return np.asarray(ids, dtype=np.int64)

    def decode(
        self, ids: Iterable[int], *, skip_specials: bool = False, stop_at_eos: bool = False
    ) -> list[str]:
        """Tokens of an id sequence.

        Args:
            ids: ints or a 1-D integer array.
            skip_specials: leave out pad/unk/bos/eos tokens.
            stop_at_eos: stop before the first ``<eos>``.
        Returns:
            list of str.
        """
        special_ids = {self._stoi[t] for t in self._roles.values()}
        eos = self.eos_id
        out = []
        n = len(self._itos)
        for pos, i in enumerate(np.asarray(ids).reshape(-1).tolist()):
            if not isinstance(i, int) or not 0 <= i < n:
                raise ValueError(f"Vocab.decode: id {i!r} at position {pos} out of range [0, {n})")
            if stop_at_eos and i == eos:
                break
            if skip_specials and i in special_ids:
                continue
            out.append(self._itos[i])
        return out

    def _required(self, role: str, arg: str) -> int:
        i = self._role_id(role)
        if i is None:
            raise ValueError(f"Vocab.encode: {arg}=True but the vocabulary has no {role} token")
        return i

    # ---- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (e.g. for a checkpoint's metadata); :meth:`from_dict` inverts it."""
        return {
            "format": _FORMAT,
            "version": 1,
            "tokens": list(self._itos),
            "specials": self.specials,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Vocab:
        """Vocabulary from :meth:`to_dict`'s output (ValueError when the dict is not one)."""
        if not isinstance(d, Mapping) or d.get("format") != _FORMAT:
            raise ValueError(f"Vocab.from_dict: not a vocabulary dict (format != {_FORMAT!r})")
        if d.get("version") != 1:
            raise ValueError(f"Vocab.from_dict: unsupported version {d.get('version')!r}")
        tokens, specials = d.get("tokens"), d.get("specials", {})
        if not isinstance(tokens, Sequence) or isinstance(tokens, str):
            raise ValueError("Vocab.from_dict: 'tokens' must be a list of str")
        unknown = set(specials) - set(_ROLES)
        if unknown:
            raise ValueError(f"Vocab.from_dict: unknown special roles {sorted(unknown)}")
        return cls(tokens, **specials)

    def save(self, path: PathLike) -> None:
        """Write :meth:`to_dict` as UTF-8 JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: PathLike) -> Vocab:
        """Read a vocabulary written by :meth:`save`."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"Vocab.load: file not found: {p}")
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"Vocab.load: {p} is not a JSON vocabulary ({e})") from None
        try:
            return cls.from_dict(d)
        except ValueError as e:
            raise ValueError(f"{p}: {e}") from None


def build_label_vocab(label_sequences: Iterable[Iterable[str]], *, pad: bool = True) -> Vocab:
    """Vocabulary of labels (tags or classes): no ``<unk>``, so an unseen label is an error.

    Args:
        label_sequences: iterable of label sequences (e.g. the tag lists of a tagging set).
        pad: put ``<pad>`` at id 0 (the label of padded positions, to be masked out).
    Returns:
        Vocab ordered ``<pad>`` (if pad), then labels by decreasing count, ties by first occurrence.
    """
    return Vocab.build(label_sequences, pad=pad, unk=False)
