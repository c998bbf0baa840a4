"""Uploading an exported folder to the Hugging Face Hub."""

from __future__ import annotations

import os

#: what an upload leaves out: checkpoints (optimizer state, pickles), hidden files (.env, credentials)
NEVER_PUSHED = ["checkpoints/*", "**/checkpoint-*/**", ".*", "**/.*", "*.pkl", "*.pt", "*.pth", "*.bin"]


def push_folder(folder: str, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Create (or reuse) ``repo_id`` and upload ``folder``; the token comes from HF_TOKEN / login."""
    from huggingface_hub import HfApi

    if not any(os.path.isfile(os.path.join(folder, f)) for f in ("config.json", "adapter_config.json")):
        raise FileNotFoundError(f"{folder} has no config.json or adapter_config.json; push an exported hf_lite folder")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    summary = "hf_lite export"
    recipe = os.path.join(folder, "recipe.yaml")
    if os.path.exists(recipe):
        import yaml

        with open(recipe) as f:
            mods = [m.get("type") for m in (yaml.safe_load(f) or {}).get("modifiers") or []]
        summary += f" ({', '.join(mods) or 'dense'})"
    info = api.upload_folder(folder_path=folder, repo_id=repo_id, commit_message=summary, ignore_patterns=NEVER_PUSHED)
    return str(info)
