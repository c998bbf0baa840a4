"""Safe by default, kept so: YAML read only through a SafeLoader, no pickles written, no remote code,
and an upload leaves out checkpoints, pickles and hidden files."""

from __future__ import annotations

import os
import re

from conftest import REPO


def sources() -> dict[str, str]:
    root = os.path.join(REPO, "hf_lite")
    return {
        os.path.relpath(os.path.join(d, f), REPO): open(os.path.join(d, f)).read()
        for d, _, files in os.walk(root)
        for f in files
        if f.endswith(".py")
    }


def test_no_unsafe_loading_or_pickles_or_remote_code():
    for path, text in sources().items():
        assert not re.search(r"yaml\.load\((?![^)]*RecipeLoader)", text), path
        assert not re.search(r"\bpickle\b|torch\.save\(|torch\.load\(", text), path
        assert "trust_remote_code=True" not in text, path


def test_push_leaves_out_checkpoints_pickles_and_hidden_files(tmp_path, monkeypatch):
    import fnmatch

    import huggingface_hub

    from hf_lite.hub import NEVER_PUSHED, push_folder

    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, *a, **k):
            pass

        def upload_folder(self, folder_path, repo_id, commit_message, ignore_patterns):
            calls["ignore"] = ignore_patterns
            return "uploaded"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    (tmp_path / "config.json").write_text("{}")
    assert push_folder(str(tmp_path), "me/model") == "uploaded"
    assert calls["ignore"] == NEVER_PUSHED
    for name in ("checkpoints/checkpoint-4/optimizer.pt", ".env", "sub/.git-credentials", "x.pkl", "rng_state.pth"):
        assert any(fnmatch.fnmatch(name, p) for p in NEVER_PUSHED), name
    for name in ("model.safetensors", "config.json", "tokenizer.json", "adapter/adapter_model.safetensors"):
        assert not any(fnmatch.fnmatch(name, p) for p in NEVER_PUSHED), name
