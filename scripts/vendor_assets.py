"""Vendor the web pages' third-party assets from npm into the package (no CDN at run time).

Each package is fetched at a pinned version with ``npm pack`` into a temporary directory, its
tarball's sha512 integrity is checked against the registry's, and the files the pages load are
copied, with the package's LICENSE, into ``src/solaris/portal/static/vendor/<name>/``. A
``VERSIONS.txt`` there records what was vendored. To upgrade, change a pin and run:

    uv run python scripts/vendor_assets.py
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ASSETS", "Asset", "main", "vendor"]

VENDOR_DIR = Path(__file__).parents[1] / "src" / "solaris" / "portal" / "static" / "vendor"
NPM_TIMEOUT_S = 120


@dataclass(frozen=True)
class Asset:
    """One npm package: where it goes and which of its files (paths inside `package/`)."""

    package: str
    version: str
    directory: str
    files: tuple[str, ...]
    license: str = "LICENSE"


ASSETS = (
    Asset("chart.js", "4.6.1", "chartjs", ("dist/chart.umd.min.js",), "LICENSE.md"),
    Asset("htmx.org", "2.0.11", "htmx", ("dist/htmx.min.js",)),
    Asset(
        "swagger-ui-dist",
        "5.35.0",
        "swagger-ui",
        ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"),
    ),
)


def _npm(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["npm", *args, "--loglevel=error"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=NPM_TIMEOUT_S,
    )
    return done.stdout


def _check_integrity(tarball: Path, integrity: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    assert algorithm == "sha512", integrity
    digest = base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    if digest != expected:
        raise SystemExit(f"{tarball.name}: integrity mismatch ({digest} != {expected})")


def vendor(asset: Asset, out: Path) -> str:
    """Fetch one package and copy its files into `out/<directory>`; returns its record line."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        packed = json.loads(_npm("pack", f"{asset.package}@{asset.version}", "--json", cwd=work))
        tarball = work / packed[0]["filename"]
        _check_integrity(tarball, packed[0]["integrity"])
        with tarfile.open(tarball) as archive:
            archive.extractall(work / "unpacked", filter="data")
        root = work / "unpacked" / "package"
        target = out / asset.directory
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name in (*asset.files, asset.license):
            shutil.copyfile(root / name, target / Path(name).name)
        return f"{asset.package}@{asset.version} {packed[0]['integrity']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=VENDOR_DIR, help="vendor directory")
    args = parser.parse_args()
    records = [vendor(asset, args.out) for asset in ASSETS]
    (args.out / "VERSIONS.txt").write_text("\n".join(records) + "\n")
    print("\n".join(records))


if __name__ == "__main__":
    main()
