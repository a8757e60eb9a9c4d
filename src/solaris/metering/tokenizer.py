"""Offline tiktoken encodings built from the BPE files shipped in ``encodings/``.

tiktoken's registry downloads its BPE files on first use, and the gateway must start without
network access. So we run tiktoken's own encoding constructors (for the split regex and the
special tokens) with their file loader pointed at the shipped copies, which are checked against
the sha256 those constructors pass in.

An encoding is built the first time a model needs it (some 0.2 to 0.4 CPU-seconds; the Rust
core's tables then hold 23 MiB for cl100k_base, 40 MiB for o200k_base), so a gateway starts
without reading vocabularies no request may ever use; the request path asks `prepare` first,
which builds it on a worker thread instead of stalling the loop.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import hashlib
import threading
import types
from functools import lru_cache
from pathlib import Path
from typing import Any

import tiktoken
from tiktoken.model import encoding_name_for_model
from tiktoken_ext import openai_public  # type: ignore[import-untyped]

ENCODINGS_DIR = Path(__file__).with_name("encodings")
SHIPPED_ENCODINGS = ("o200k_base", "cl100k_base")
# Models tiktoken does not know (claude-*, llama-*, ...) get the newer, larger vocabulary.
DEFAULT_ENCODING = "o200k_base"


def load_bpe_file(path: Path, expected_hash: str) -> dict[bytes, int]:
    """Parse a ``.tiktoken`` file ("base64-token rank" lines) once its sha256 matches.

    tiktoken.load.load_tiktoken_bpe would also copy local files into its download cache (and
    fail where TIKTOKEN_CACHE_DIR is read-only), so the same check and parse are done here.
    """
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_hash:
        raise ValueError(f"sha256 mismatch for {path}: expected {expected_hash}, got {actual}")
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def build_encoding(name: str, directory: Path = ENCODINGS_DIR) -> tiktoken.Encoding:
    """Build encoding `name` from `directory`, uncached; never touches the network."""
    if name not in SHIPPED_ENCODINGS:
        raise ValueError(f"encoding {name!r} is not shipped (have {', '.join(SHIPPED_ENCODINGS)})")

    def load_local(blobpath: str, expected_hash: str) -> dict[bytes, int]:
        # The constructor passes its download URL; the file name is the same locally.
        return load_bpe_file(directory / blobpath.rsplit("/", 1)[-1], expected_hash)

    # Run a copy of the constructor whose globals resolve `load_tiktoken_bpe` to the local
    # loader: unlike patching openai_public, this changes nothing other threads can see.
    constructor = openai_public.ENCODING_CONSTRUCTORS[name]
    local_constructor = types.FunctionType(
        constructor.__code__, {**constructor.__globals__, "load_tiktoken_bpe": load_local}
    )
    params: dict[str, Any] = local_constructor()
    return tiktoken.Encoding(**params)


_built: dict[str, tiktoken.Encoding] = {}
_building = threading.Lock()  # two first requests at once build one copy, not two


def get_encoding(name: str) -> tiktoken.Encoding:
    """The shared encoding `name` (one of SHIPPED_ENCODINGS), built on first use."""
    found = _built.get(name)
    if found is None:
        with _building:
            found = _built.get(name)
            if found is None:
                found = build_encoding(name)
                # tiktoken keeps the ranks twice: in its Rust core, which counts, and in a Python
                # dict (~30 MiB for o200k_base) read only to pickle the encoding, which the
                # gateway never does. Keep one copy.
                found._mergeable_ranks = {}
                _built[name] = found
                release_free_memory()
    return found


def few_malloc_arenas() -> None:
    """Cap glibc's malloc arenas at two (mallopt M_ARENA_MAX; the default is 8 per core), before
    the app's threads start. An encoding is built on a worker thread, and of the ~30 MiB its
    Python ranks and the Rust core's growing tables leave free, `release_free_memory` then
    returns ~4 MiB more (o200k_base, measured in `solaris serve`; nothing with the default
    arenas). Two, not one: the event loop and the worker threads (tokenizing large prompts,
    GIL released) keep separate arena locks. A no-op where the C library is not glibc."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)


def release_free_memory() -> None:
    """Give the pages malloc holds free back to the system (glibc's malloc_trim)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


M_ARENA_MAX = -8  # glibc's malloc.h
MALLOC_ARENAS = 2


@lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    libc = ctypes.CDLL(None)  # the symbols this process has loaded: the C library's among them
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


@lru_cache(maxsize=1024)  # bounded because model names come from clients
def encoding_name(model: str) -> str:
    """tiktoken's encoding for `model`, narrowed to the shipped ones.

    "provider/model" names (e.g. "openai/gpt-4o") are looked up without the provider prefix.
    """
    try:
        name = encoding_name_for_model(model.rsplit("/", 1)[-1])
    except KeyError:
        return DEFAULT_ENCODING
    if name in SHIPPED_ENCODINGS:
        return name
    # o200k_harmony (gpt-oss) has o200k_base's ranks and regex and differs only in special
    # tokens, which count as plain text here; the older r50k/p50k families are closest to cl100k.
    return "o200k_base" if name.startswith("o200k") else "cl100k_base"


# Bounded because model names come from clients.
@lru_cache(maxsize=1024)
def encoding_for_model(model: str) -> tiktoken.Encoding:
    """The encoding used to count tokens for `model` (o200k_base when unknown)."""
    return get_encoding(encoding_name(model))


@lru_cache(maxsize=1024)
def is_exact(model: str) -> bool:
    """Whether `model`'s own tokenizer is shipped (else o200k_base stands in for it)."""
    try:
        name = encoding_name_for_model(model.rsplit("/", 1)[-1])
    except KeyError:
        return False
    return name in SHIPPED_ENCODINGS or name.startswith("o200k")


def count_tokens(model: str, text: str) -> int:
    """Tokens in `text` for `model`; special-token text such as "<|endoftext|>" is plain text."""
    # encode_ordinary is tiktoken's faster equivalent of encode(text, disallowed_special=()).
    return len(encoding_for_model(model).encode_ordinary(text))


async def prepare(model: str) -> None:
    """Have `model`'s encoding built before counting with it; the first time, on a thread."""
    if encoding_name(model) not in _built:
        await asyncio.to_thread(encoding_for_model, model)


def warm() -> None:
    """Build every shipped encoding now (the dev provider, which counts every model)."""
    for name in SHIPPED_ENCODINGS:
        get_encoding(name)
