"""Evaluation text no one here wrote, found at run time (nothing is copied into the
repository; results.md names what was used):

- code: the largest modules of the running Python's standard library (source), one
  window per module (its first tokens);
- prose: the licence texts a Debian system ships (``/usr/share/common-licenses``,
  regular files, largest first, joined in that order) and the English topic texts of
  the standard library's ``pydoc_data.topics`` (sorted by topic, joined), cut into
  consecutive disjoint windows.

``windows(model, n_tokens, count)`` alternates code and prose windows of exactly
``n_tokens`` tokens. ``passkey(...)`` builds the passkey-retrieval prompts.
"""

from __future__ import annotations

import pathlib
import sysconfig
from typing import Iterator, List, NamedTuple

import numpy as np

LICENSES = pathlib.Path("/usr/share/common-licenses")


class Text(NamedTuple):
    kind: str  # "code" or "prose"
    source: str  # where it came from (module file name, or stream and window number)
    ids: np.ndarray  # int64 token ids


def _stdlib_modules() -> List[pathlib.Path]:
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    mods = [p for p in root.glob("*.py") if p.is_file() and not p.is_symlink()]
    return sorted(mods, key=lambda p: (-p.stat().st_size, p.name))


def _code(model, n_tokens) -> Iterator[Text]:
    for p in _stdlib_modules():
        ids = model.encode_unchecked(p.read_text(encoding="utf-8", errors="replace"))
        if ids.size >= n_tokens:
            yield Text("code", f"stdlib {p.name}", ids[:n_tokens])


def _streams():
    out = []
    if LICENSES.is_dir():
        files = sorted((p for p in LICENSES.iterdir() if p.is_file() and not p.is_symlink()),
                       key=lambda p: (-p.stat().st_size, p.name))
        if files:
            out.append(("licences " + ",".join(p.name for p in files),
                        "\n\n".join(p.read_text(encoding="utf-8", errors="replace") for p in files)))
    import pydoc_data.topics as t

    out.append(("pydoc_data.topics", "\n\n".join(t.topics[k] for k in sorted(t.topics))))
    return out


def _prose(model, n_tokens) -> Iterator[Text]:
    streams = []
    for name, text in _streams():
        ids = model.encode_unchecked(text)
        streams.append((name, [ids[i:i + n_tokens] for i in range(0, ids.size - n_tokens + 1, n_tokens)]))
    # Alternate the streams, window by window.
    for j in range(max(len(w) for _, w in streams)):
        for name, w in streams:
            if j < len(w):
                yield Text("prose", f"{name.split(' ')[0]} window {j}", w[j])


def windows(model, n_tokens: int, count: int) -> List[Text]:
    """``count`` texts of ``n_tokens`` tokens, code and prose alternating."""
    code, prose = _code(model, n_tokens), _prose(model, n_tokens)
    out: List[Text] = []
    for i in range(count):
        src = code if i % 2 == 0 else prose
        t = next(src, None) or next(prose if src is code else code, None)
        if t is None:
            raise ValueError(f"not enough text for {count} windows of {n_tokens} tokens")
        out.append(t)
    return out


def describe_sources() -> str:
    """Where the texts come from (for results.md)."""
    # The version, not the path: the install location differs from machine to machine.
    ver = sysconfig.get_python_version()
    lic = [p.name for p in sorted(LICENSES.iterdir())] if LICENSES.is_dir() else []
    return (f"the Python {ver} standard library (`sysconfig.get_paths()['stdlib']`, "
            f"largest modules first), "
            f"`{LICENSES}` ({len(lic)} licence texts), `pydoc_data.topics`")


# -- passkey retrieval -----------------------------------------------------------------

INTRO = ("There is an important piece of information hidden inside a lot of irrelevant text. "
         "Find it and memorize it. I will quiz you about it.\n")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key. "
QUESTION = "\nWhat is the pass key? The pass key is"


class Passkey(NamedTuple):
    ids: np.ndarray  # the whole prompt
    n_question: int  # its last tokens: the question
    key: str
    depth: float


def passkey(model, n_tokens: int, depth: float, key: str) -> Passkey:
    """A prompt of at most ``n_tokens`` tokens: the needle with ``key`` at ``depth``
    (0 = start, 1 = end) of repeated filler, then the question."""
    question = model.encode_unchecked(QUESTION)
    f = model.encode_unchecked(FILLER).size
    fixed = model.encode_unchecked(INTRO + NEEDLE.format(key=key)).size + question.size
    reps = max((n_tokens - fixed) // f, 1)
    while True:
        before = int(round(depth * reps))
        text = INTRO + FILLER * before + NEEDLE.format(key=key) + FILLER * (reps - before)
        ids = np.concatenate([model.encode_unchecked(text), question])
        if ids.size <= n_tokens:
            break
        reps -= 1
    return Passkey(ids, question.size, key, depth)
