"""What `fetch` downloads: the checkpoint files the chosen model variants read (engine.layout),
looked up on the Hugging Face Hub with their sizes and hashes, pinned to one commit per
repository so every file of a fetch comes from the same revision.

All network access goes through `huggingface_hub`, which reads HF_ENDPOINT, HF_TOKEN and the
proxy variables; `hub_errors` turns its exceptions into messages that say what to do.
"""
from __future__ import annotations

import contextlib
import errno
from dataclasses import dataclass

from engine import layout
from engine.variants import FP8_VARIANTS, VARIANTS
from ovi_studio.errors import UserError

DEFAULT_MODELS = tuple(VARIANTS)  # as the official download script: every variant


@dataclass(frozen=True)
class RemoteFile:
    repo: str
    revision: str  # the commit the whole repository listing came from
    path: str  # inside the repository
    dest: str  # relative to the checkpoint folder
    size: int
    sha256: str | None  # LFS files: the hub's content hash
    git_oid: str  # the git blob id (sha1 of "blob <size>\0" + content): small files' hash

    @property
    def hash_kind(self) -> str:
        return "sha256" if self.sha256 else "git-sha1"

    @property
    def expected_hash(self) -> str:
        return self.sha256 or self.git_oid


def wanted_paths(models: tuple[str, ...], fp8: bool) -> list[str]:
    """Checkpoint paths (files, or the tokenizer folder) the variants read, each once. With
    `fp8`, a variant that has a published fp8 file reads it instead of its bf16 file; the
    others convert their bf16 file at load."""
    unknown = [name for name in models if name not in VARIANTS]
    if unknown:
        raise UserError(f"unknown model {', '.join(map(repr, unknown))}",
                        hint=f"--models takes a comma-separated list of {', '.join(VARIANTS)}")
    paths: list[str] = []
    for name in models:
        for rel in layout.required_files(VARIANTS[name], fp8 and name in FP8_VARIANTS):
            if rel not in paths:
                paths.append(rel)
    return paths


def list_remote_files(models: tuple[str, ...], fp8: bool, *, endpoint: str | None = None,
                      token: str | None = None) -> list[RemoteFile]:
    """Every file to fetch, with the size and hash the hub records for it (one `model_info`
    call per repository)."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    by_repo: dict[str, list[str]] = {}
    for rel in wanted_paths(models, fp8):
        by_repo.setdefault(layout.source_of(rel), []).append(rel)
    files: list[RemoteFile] = []
    for repo, rels in by_repo.items():
        with hub_errors(api.endpoint, repo):
            info = api.model_info(repo, files_metadata=True)
        siblings = {s.rfilename: s for s in info.siblings or ()}
        for rel in rels:
            inside = layout.path_in_source(rel)
            matched = [name for name in siblings if name == inside or name.startswith(inside + "/")]
            if not matched:
                raise UserError(f"{api.endpoint}/{repo} has no {inside}",
                                hint="HF_ENDPOINT must point to the Hugging Face Hub or a full mirror of it")
            for name in sorted(matched):
                sibling = siblings[name]
                files.append(RemoteFile(
                    repo=repo, revision=info.sha, path=name,
                    dest=rel if name == inside else rel + name[len(inside):],
                    size=sibling.lfs.size if sibling.lfs else sibling.size,
                    sha256=sibling.lfs.sha256 if sibling.lfs else None,
                    git_oid=sibling.blob_id))
    return files


def file_url(file: RemoteFile, endpoint: str) -> str:
    from huggingface_hub import hf_hub_url
    return hf_hub_url(file.repo, file.path, revision=file.revision, endpoint=endpoint)


@contextlib.contextmanager
def hub_errors(endpoint: str, repo: str, path: str | None = None):
    """Network, hub and disk failures while fetching from `repo` as UserErrors that name the
    cause and the fix."""
    import httpx2
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled

    what = f"{repo}/{path}" if path else repo
    try:
        yield
    except GatedRepoError:
        raise UserError(f"{repo} is gated on {endpoint}: access is granted per account",
                        hint=f"accept its terms at {endpoint}/{repo} and set HF_TOKEN "
                             "(or run `hf auth login`)") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise UserError(f"{endpoint} refused access to {what} (HTTP {status})",
                            hint="set HF_TOKEN to a valid token with read access (or run `hf auth login`); "
                                 "an expired or wrong token is refused even for public repositories") from None
        if status == 404:
            raise UserError(f"{what} not found on {endpoint} (HTTP 404)",
                            hint="check HF_ENDPOINT: a mirror must carry this repository and file") from None
        raise UserError(f"{endpoint} failed for {what}: HTTP {status}",
                        hint="the hub may be down; run the same command again later "
                             "(completed files are kept, a partial file resumes)") from None
    except OfflineModeIsEnabled:
        raise UserError("HF_HUB_OFFLINE is set: downloads are disabled",
                        hint="unset HF_HUB_OFFLINE to fetch") from None
    except httpx2.TransportError as exc:  # no route, DNS, proxy, timeout, connection dropped
        raise UserError(f"cannot reach {endpoint} for {what}: {exc}",
                        hint="check the network connection, HTTPS_PROXY, or HF_ENDPOINT (a mirror); "
                             "run the same command again to resume") from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise UserError(f"the disk filled up while fetching {what}",
                            hint="free space (see the sizes above) or choose --ckpt-dir / HF_HOME on a "
                                 "larger disk; the partial file resumes on the next run") from None
        if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise UserError(f"cannot write {exc.filename or what}: {exc.strerror}",
                            hint="choose a writable --ckpt-dir or fix the folder's permissions") from None
        raise
