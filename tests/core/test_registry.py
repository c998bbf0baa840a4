"""The registry finds methods on disk: a new method module registers itself without an import list."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import pytest

import hf_lite
from hf_lite.core.modifier import MODIFIERS, build_modifier


def test_a_new_method_file_registers_without_touching_an_import_list(tmp_path, monkeypatch):
    pkg = tmp_path / "my_methods"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from hf_lite.core.modifier import import_submodules\nimport_submodules(__name__, __path__)\n"
    )
    (pkg / "scaled_noise.py").write_text(
        "from hf_lite.core.modifier import Modifier, register_modifier\n\n"
        "@register_modifier('test_scaled_noise')\nclass ScaledNoise(Modifier):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module("my_methods")
        assert type(build_modifier({"type": "test_scaled_noise"})).__name__ == "ScaledNoise"
    finally:
        MODIFIERS.pop("test_scaled_noise", None)
        sys.modules.pop("my_methods.scaled_noise", None)
        sys.modules.pop("my_methods", None)


def test_every_method_package_on_disk_is_imported():
    build_modifier({"type": "qat"})  # triggers the discovery
    packages = {i.name for i in pkgutil.iter_modules(hf_lite.__path__) if i.ispkg} - hf_lite._INFRASTRUCTURE
    assert packages == {"distillation", "oneshot", "peft", "pruning", "quantization"}
    assert all(f"hf_lite.{p}" in sys.modules for p in packages)
    # one module per method: each registered type lives in a module named after its method, not in a catch-all
    homes = {
        name: cls.__module__.rsplit(".", 1)[-1]
        for name, cls in MODIFIERS.items()
        if cls.__module__.startswith("hf_lite.")
    }
    assert "modifiers" not in set(homes.values()) - {"modifier"}, homes


@pytest.mark.parametrize(
    "package, name",
    [("quantization", "FakeQuantLinear"), ("oneshot", "GridLinear"), ("peft", "LoraModifier"),
     ("pruning", "MovementPruningModifier")],
)  # fmt: skip
def test_old_modifiers_modules_still_import_with_a_deprecation_warning(package, name):
    import warnings

    sys.modules.pop(f"hf_lite.{package}.modifiers", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = importlib.import_module(f"hf_lite.{package}.modifiers")
    assert any(issubclass(w.category, DeprecationWarning) and "deprecated" in str(w.message) for w in caught)
    new = [m for m in sys.modules.values() if getattr(m, "__name__", "").startswith(f"hf_lite.{package}.")
           and m is not old and getattr(m, name, None) is getattr(old, name)]  # fmt: skip
    assert new, f"{name} has no home outside the deprecated module"
