"""`ovi-studio fetch`: download the model files the chosen variants need, in the official
checkpoint layout, resumable and verified against the hub (remote.py: what; transfer.py: how)."""
from __future__ import annotations

from ovi_studio.fetch.remote import DEFAULT_MODELS, RemoteFile, file_url, list_remote_files, wanted_paths
from ovi_studio.fetch.transfer import FetchPlan, Item, file_hash, format_size, plan_fetch, run_fetch

__all__ = ["DEFAULT_MODELS", "FetchPlan", "Item", "RemoteFile", "file_hash", "file_url", "format_size",
           "list_remote_files", "plan_fetch", "run_fetch", "wanted_paths"]
