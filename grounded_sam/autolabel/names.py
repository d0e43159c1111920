"""Output names of a labelling run: every image gets a safe, unique relative name.

Per-image exports (``masks/<name>.png``, ``yolo/labels/<name>.txt``) are named after the
image's ``file_name`` (posix, relative to the dataset root) with the rule below, applied to the
whole listing at once, so that no two images write the same file and no file lands outside
the output folder:

1. Each ``/``-separated part is kept, except that characters that are separators or illegal
   on some system (``\\ : * ? " < > |`` and control characters) become ``_``, and a part that
   is empty, ``.`` or ``..`` becomes ``_``. A name changed by this gets ``~`` and the first 8
   hex digits of the sha1 of its ``file_name`` appended to its stem:
   ``q\\..\\evil.png`` -> ``q_.._evil~1f2e3d4c.png``; ``x\\y.png`` -> ``x_y~….png``.
2. Names that still clash with another image's, ignoring the suffix and letter case (the
   exports replace the suffix: ``a.jpg`` and ``a.PNG`` would both write ``a.txt``), are
   resolved in sorted ``file_name`` order: the first keeps its name, each other one gets the
   same ``~`` + 8-hex-digit tag.

The COCO file keeps every image's real ``file_name``; only file names on disk follow the rule.
The rule depends on the listing only, so every shard and the merge agree on it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import PurePosixPath

_UNSAFE = re.compile(r'[\\:*?"<>|\x00-\x1f\x7f]')


def output_names(file_names: Iterable[str]) -> dict[str, str]:
    """``file_name -> safe unique relative posix name`` (original suffix kept) for a listing."""
    names = sorted(set(file_names))
    out = {name: _safe_name(name) for name in names}
    seen: set[str] = set()
    for name in names:
        base, salt = out[name], name
        while _clash_key(out[name]) in seen:  # more than once only for crafted names
            out[name] = _tagged(base, salt)
            salt += "~"
        seen.add(_clash_key(out[name]))
    return out


def _safe_name(file_name: str) -> str:
    parts = [
        "_" if part in ("", ".", "..") else _UNSAFE.sub("_", part) for part in file_name.split("/")
    ]
    safe = "/".join(parts)
    return safe if safe == file_name else _tagged(safe, file_name)


def _tagged(safe: str, file_name: str) -> str:
    tag = hashlib.sha1(file_name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    path = PurePosixPath(safe)
    return str(path.with_name(f"{path.stem}~{tag}{path.suffix}"))


def _clash_key(name: str) -> str:
    path = PurePosixPath(name)
    return str(path.with_suffix("")).casefold()
