"""Evaluation texts no one here wrote: the docstrings of Python's standard library.

Docstrings of modules, classes and functions are collected from the standard library
modules that import cleanly, in a fixed order, deduplicated, and concatenated into texts
of exactly L tokens (CLS ... SEP) for each target length L. Deterministic: the same
Python version gives the same texts.
"""
import importlib
import inspect
import sys
import warnings

# Modules that open windows, play sounds, print on import, or are not meant for use.
SKIP = {
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "pydoc_data", "lib2to3",
    "ensurepip", "venv", "test", "msilib", "winreg", "winsound", "msvcrt", "_winapi", "nt",
    "__hello__", "__phello__", "xxsubtype", "xxlimited", "xxlimited_35", "idle",
}


def docstrings():
    """Every distinct docstring of at least 200 characters, in a stable order."""
    seen = set()
    out = []
    names = sorted(n for n in sys.stdlib_module_names if not n.startswith("_") and n not in SKIP)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            try:
                mod = importlib.import_module(name)
            except Exception:  # noqa: BLE001 - platform-specific or optional modules
                continue
            objs = [mod]
            for attr in sorted(dir(mod)):
                try:
                    obj = getattr(mod, attr)
                except Exception:  # noqa: BLE001
                    continue
                if (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(obj, "__module__", None) == name:
                    objs.append(obj)
            for obj in objs:
                doc = inspect.getdoc(obj)
                if doc and len(doc) >= 200 and doc not in seen:
                    seen.add(doc)
                    out.append(" ".join(doc.split()))
    return out


def split(docs, part):
    """`part` = "all", or the disjoint halves of the corpus: "train" (every 4th
    docstring, from the 4th on) and "eval" (the others)."""
    if part == "all":
        return docs
    if part == "train":
        return [d for i, d in enumerate(docs) if i % 4 == 3]
    if part == "eval":
        return [d for i, d in enumerate(docs) if i % 4 != 3]
    raise ValueError(f"part must be 'all', 'train' or 'eval', not {part!r}")


def texts(tokenizer, length, count, part="all"):
    """`count` texts of exactly `length` tokens (with CLS and SEP): docstrings (of
    `part`, see split) are concatenated in order until the text is long enough, then
    cut at `length`. Returns a list of int32 token id arrays."""
    import numpy as np

    docs = split(docstrings(), part)
    body = length - 2
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    out = []
    buf = []
    for doc in docs:
        ids = tokenizer.encode(doc, add_special_tokens=False).ids
        buf.extend(ids)
        if len(buf) >= body:
            out.append(np.array([cls_id] + buf[:body] + [sep_id], dtype=np.int32))
            buf = []
            if len(out) == count:
                break
    if len(out) < count:
        raise ValueError(f"only {len(out)} texts of {length} tokens could be built (asked for {count})")
    return out
