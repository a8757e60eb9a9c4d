"""Regenerate the shipped ``.tiktoken`` files from the npm package ``tiktoken``.

Provenance of src/solaris/metering/encodings/: the npm package tiktoken@1.0.22 carries each
encoding as ``encoders/<name>.json``, whose ``bpe_ranks`` lines read
``<key> <offset> <token> <token> ...`` (base64 tokens, the i-th of a line having rank
offset + i). Rewritten as tiktoken's ``<token> <rank>`` lines sorted by rank, they are byte for
byte the files tiktoken downloads: a file replaces the shipped one only once it loads with the
sha256 that tiktoken_ext.openai_public expects for it.

    npm pack tiktoken@1.0.22 && tar xzf tiktoken-1.0.22.tgz
    uv run python scripts/encodings_from_npm.py package
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from pathlib import Path

from solaris.metering.tokenizer import ENCODINGS_DIR, SHIPPED_ENCODINGS, build_encoding


def tiktoken_file(bpe_ranks: str) -> bytes:
    """The ``.tiktoken`` form of an npm encoder's ``bpe_ranks`` string."""
    ranked: list[tuple[int, str]] = []
    for line in bpe_ranks.splitlines():
        if line.strip():
            _key, offset, *tokens = line.split()
            ranked += ((int(offset) + i, token) for i, token in enumerate(tokens))
    ranked.sort()
    return "".join(f"{token} {rank}\n" for rank, token in ranked).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", type=Path, help="unpacked npm tiktoken package directory")
    parser.add_argument("--out", type=Path, default=ENCODINGS_DIR, help="output directory")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    for name in SHIPPED_ENCODINGS:
        encoder = json.loads((args.package / "encoders" / f"{name}.json").read_text())
        data = tiktoken_file(encoder["bpe_ranks"])
        with tempfile.TemporaryDirectory(dir=args.out) as staging:
            staged = Path(staging) / f"{name}.tiktoken"
            staged.write_bytes(data)
            build_encoding(name, Path(staging))  # raises unless tiktoken's sha256 matches
            os.replace(staged, args.out / staged.name)
        print(f"{name}.tiktoken sha256 {hashlib.sha256(data).hexdigest()} ok")


if __name__ == "__main__":
    main()
