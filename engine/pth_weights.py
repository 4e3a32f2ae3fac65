"""Reading the torch-pickle weight files of the Wan and MMAudio components.

`weights_only=True` means no pickled code ever runs; `mmap=True` maps the file instead of
reading 11 GB of T5 into memory before the tensors are moved where they belong.
Every failure is one `CheckpointError` naming the file, what is wrong and where it comes from.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from engine.errors import CheckpointError
from engine.layout import source_of

_LISTED = 3  # keys named in a mismatch message


def download_hint(root: Path, relative: str) -> str:
    """How to fetch `relative` (a file, or a folder pattern ending in /*) again."""
    repo = source_of(relative)
    top, in_repo = relative.split("/", 1)
    return (f"{relative} comes from the Hugging Face repository {repo}; download it again with "
            f"`huggingface-cli download {repo} --include '{in_repo}' --local-dir {root / top}`")


def read_pth(root: Path, relative: str):
    """The object stored in a .pth/.pt file (tensors and plain containers only)."""
    path = root / relative
    if not path.is_file():
        raise CheckpointError(path, "weights file not found", download_hint(root, relative))
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # legacy (non-zip) serialisation cannot be mapped
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or pickled code
        raise CheckpointError(path, f"unreadable weights file ({exc})", download_hint(root, relative)) from None


def read_pth_state_dict(root: Path, relative: str, *, under: str | None = None) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} dict from a .pth file, optionally stored under a top-level key."""
    state = read_pth(root, relative)
    if under is not None:
        if not isinstance(state, dict) or under not in state:
            raise CheckpointError(root / relative, f"no {under!r} entry holding the weights",
                                  download_hint(root, relative))
        state = state[under]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(root / relative, "not a state dict of tensors", download_hint(root, relative))
    return state


def _some(keys: list[str]) -> str:
    more = f" and {len(keys) - _LISTED} more" if len(keys) > _LISTED else ""
    return ", ".join(keys[:_LISTED]) + more


def check_keys(expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor], root: Path,
               relative: str) -> None:
    """Strict key and shape check, all problems reported in one message."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} is {list(state[k].shape)}, expected {list(expected[k])}"
             for k in sorted(set(expected) & set(state)) if tuple(state[k].shape) != tuple(expected[k])]
    problems = [f"{len(keys)} {label}: {_some(keys)}" for label, keys in
                (("missing key(s)", missing), ("unexpected key(s)", unexpected),
                 ("tensor(s) of the wrong shape", wrong)) if keys]
    if problems:
        sizes = "the sizes in arch.json" if (root / "arch.json").exists() else "the published sizes"
        raise CheckpointError(root / relative, f"does not match {sizes}: " + "; ".join(problems),
                              download_hint(root, relative) + "; or fix arch.json if this is a resized model")


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], root: Path, relative: str) -> None:
    """`load_state_dict(strict=True, assign=True)` into a model built on `meta`."""
    check_keys({k: tuple(v.shape) for k, v in model.state_dict().items()}, state, root, relative)
    model.load_state_dict(state, strict=True, assign=True)
