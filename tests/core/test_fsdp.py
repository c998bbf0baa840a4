"""FSDP2 on a CPU mesh with gloo, 2 processes, through the Trainer: every modifier computes on whole
tensors and writes in place, so the run matches one process on the same global batch (weights,
masks, grids) and the saved model reloads with plain transformers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import REPO

SCRIPT = r"""
import json, os, sys, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
fsdp = int(os.environ.get("WORLD_SIZE", "1")) > 1
if fsdp:  # test-only: accelerate turns an FSDP plugin on CPU into DDP (MULTI_CPU); keep FSDP
    import accelerate.state as st
    from accelerate.utils import DistributedType
    init = st.AcceleratorState.__init__
    def keep_fsdp(self, *a, **k):
        init(self, *a, **k)
        if k.get("fsdp_plugin") is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type, self.fsdp_plugin = DistributedType.FSDP, k["fsdp_plugin"]
    st.AcceleratorState.__init__ = keep_fsdp
import datasets
from pathlib import Path
from conftest import tiny_bert, sentiment_rows, make_tokenizer, training_args
from hf_lite import LiteTrainer, RecipeError
from hf_lite.core.distributed import full, is_sharded
tok = make_tokenizer({tok!r})
rows = sentiment_rows(64)
enc = tok([r[0] for r in rows], truncation=True, max_length=16, padding="max_length")
ds = datasets.Dataset.from_dict({{**enc, "labels": [r[1] for r in rows]}})
extra = dict(fsdp="full_shard", fsdp_config={{"fsdp_version": 2, "transformer_layer_cls_to_wrap": ["BertLayer"],
             "state_dict_type": "SHARDED_STATE_DICT"}}) if fsdp else {{}}
for name, recipe in {recipes}.items():
    out = os.path.join({out!r}, name)
    args = training_args(Path(out), per_device_train_batch_size={bs}, max_steps=6, learning_rate=5e-3,
                         save_strategy="steps", save_steps=3, use_cpu={cpu}, **extra)
    def build(data):
        kd = recipe[0]["type"] == "distillation"
        teacher = tiny_bert(seed=1, dropout=0.0, hidden={teachers}.get(name, 32)) if kd else None
        if name.startswith("callback_"):  # a plain Trainer with the callback; saved with cb.save_model
            from transformers import Trainer
            from hf_lite import CompressionCallback
            cb = CompressionCallback(recipe)
            # a plain Trainer multiplies BERT's loss by the world size with this on (LiteTrainer does not)
            args.average_tokens_across_devices = False
            t = Trainer(model=tiny_bert(dropout=0.0), args=args, train_dataset=data, callbacks=[cb])
            t.session, t.teacher, t.export = cb.session, None, cb.save_model
            return t
        return LiteTrainer(model=tiny_bert(dropout=0.0), args=args, train_dataset=data, recipe=recipe,
                           teacher_model=teacher)
    trainer = build(ds.select({rows}[name]) if name in {rows} else ds)
    try:
        trainer.train()
    except RecipeError as e:  # refused before the first step
        if int(os.environ.get("RANK", 0)) == 0:
            os.makedirs(out, exist_ok=True)
            json.dump({{"refused": str(e)}}, open(os.path.join(out, "result.json"), "w"))
        continue
    mod = trainer.session.modifiers[0]
    masks = {{n: full(m).tolist() for n, m in getattr(mod, "masks", {{}}).items()}}
    masks.update({{n: k.tolist() for n, k in getattr(mod, "keep", {{}}).items()}})  # structured units
    teacher_sharded = trainer.teacher is not None and any(is_sharded(p) for p in trainer.teacher.parameters())
    (trainer.export if name.startswith("callback_") else trainer.save_model)(os.path.join(out, "final"))
    if name in {resume}:  # again from checkpoint-3: must equal the uninterrupted run
        again = build(ds)
        again.train(resume_from_checkpoint=os.path.join(out, "out", "checkpoint-3"))
        again.save_model(os.path.join(out, "resumed"))
    if int(os.environ.get("RANK", 0)) == 0:
        json.dump({{"masks": masks, "stats": trainer.session.stats(), "teacher_sharded": teacher_sharded}},
                  open(os.path.join(out, "result.json"), "w"))
if torch.distributed.is_initialized():
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
"""

RECIPES = {  # per-layer top-k runs in movement; global and N:M in gmp_*
    "gmp_global": [
        {"type": "magnitude_pruning", "final_sparsity": 0.6, "start": 0, "end": 3, "update_every": 1, "scope": "global"}
    ],  # fmt: skip
    "gmp_2of4": [{"type": "magnitude_pruning", "pattern": "2:4", "start": 0, "end": 2, "update_every": 1}],
    "callback_gmp": [{"type": "magnitude_pruning", "final_sparsity": 0.5, "start": 0, "end": 3, "update_every": 1}],
    "movement": [{"type": "movement_pruning", "final_sparsity": 0.5, "start": 1, "end": 4, "update_every": 1}],
    "structured": [{"type": "structured_pruning", "heads": 0.5, "ffn": 0.5, "start": 0, "end": 3, "update_every": 1}],
    "structured_taylor": [
        {"type": "structured_pruning", "ffn": 0.5, "importance": "taylor", "start": 1, "end": 4, "update_every": 1}
    ],  # fmt: skip
    "kd": [{"type": "distillation", "alpha": 0.5, "temperature": 2.0}],
    "kd_wide": [{"type": "distillation", "alpha": 0.5, "hidden_weight": 1.0}],  # the projection trains too
    "kd_cached": [{"type": "distillation", "alpha": 0.5, "cache_teacher": True}],  # ranks hit the cache unevenly
    "lora": [{"type": "lora", "r": 4, "alpha": 8, "dropout": 0.0}],
    "qlora": [{"type": "qlora", "r": 4, "alpha": 8}],  # bitsandbytes 4-bit is not sharded: refused
    "block_drop": [{"type": "block_drop", "drop": [1], "start": 0, "end": 2}],  # removes blocks at the end: refused
    "qat_int8": [{"type": "qat", "bits": 8}],
    "qat_int8_frozen": [{"type": "qat", "bits": 8, "freeze_observers_at": 4}],  # scales from step 4: no grid check
    "qat_int4": [{"type": "qat", "bits": 4, "group_size": 16}],
    "gmp_qat": [  # QAT swaps the layers pruning already holds: pruning must follow them into the shards
        {"type": "magnitude_pruning", "final_sparsity": 0.5, "start": 0, "end": 2, "update_every": 1},
        {"type": "qat", "bits": 8},
    ],
    "wanda": [{"type": "wanda", "sparsity": 0.5}],  # one-shot at train begin, then masked recovery training
    "sparsegpt_2of4": [{"type": "sparsegpt", "sparsity": 0.5, "pattern": "2:4"}],
    "gptq_scales": [{"type": "gptq", "bits": 4, "group_size": 16, "recovery": "scales"}],
    "rtn_int8": [{"type": "rtn", "bits": 8, "group_size": None, "recovery": "snap"}],  # free weights, snapped back
}
TEACHERS = {"kd_wide": 64}  # teacher hidden size (default 32, the student's)
RESUME = {"gmp_global", "qat_int4", "kd", "gptq_scales", "structured_taylor"}
REFUSED = {"qlora", "block_drop"}
ROWS = {"kd_cached": [0, 1, 2, 3, 4, 5] * 4}  # repeated rows: some batches are all cached on one rank
ON_GRID = {
    "qat_int4": (4, 16),
    "qat_int8": (8, None),
    "gmp_qat": (8, None),
    "rtn_int8": (8, None),
    "gptq_scales": (4, 16),
}


def launch(root, nproc: int, bs: int, device: str = "cpu") -> None:
    """One torchrun for every recipe (process start-up is most of a tiny run's time)."""
    out = root / f"nproc{nproc}"
    out.mkdir()
    script = root / f"nproc{nproc}.py"
    tests = os.path.join(REPO, "tests")
    script.write_text(
        SCRIPT.format(
            tests=tests, tok=str(root / "tok"), out=str(out), bs=bs, recipes=repr(RECIPES), teachers=repr(TEACHERS),
            resume=repr(RESUME), rows=repr(ROWS), cpu=device == "cpu",
        )
    )  # fmt: skip
    # --standalone: torchrun picks a free port
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), str(script)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0 and "terminate called without an active exception" in proc.stderr:
        # a rare abort in a C++ thread's teardown (seen once in ~10 runs, never in a result): run again once
        shutil.rmtree(out)
        out.mkdir()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp")
    launch(root, 2, 4)  # FSDP2, 2 ranks x 4
    launch(root, 1, 8)  # one process, the same global batch of 8
    return root


def result(root, nproc: int, name: str) -> dict:
    folder = root / f"nproc{nproc}" / name
    return {**json.load(open(folder / "result.json")), "folder": str(folder / "final")}


def assert_close_weights(name: str, a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        diff = (a[k] - b[k]).abs()
        if (name in ON_GRID or "qat" in name) and a[k].dim() == 2 and "encoder" in k:
            # gradients summed over 2 ranks differ from one process in the last bits; a weight that sits on
            # a rounding boundary then lands one grid step away. Allow that for a few weights, no more
            step = b[k].abs().amax(dim=1, keepdim=True) / (2 ** (ON_GRID.get(name, (8,))[0] - 1) - 1)
            assert float((diff > 2e-5).float().mean()) < 0.01 and bool((diff <= step * 1.01 + 2e-5).all()), k
        else:
            assert float(diff.max()) <= 2e-5, (k, float(diff.max()))


@pytest.mark.distributed
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_fsdp2_two_processes_match_one(runs, name):
    compare(runs, name)


def compare(runs, name: str) -> None:
    """The 2-process FSDP2 run of ``name`` against one process (also used by tests/gpu)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    sharded, single = result(runs, 2, name), result(runs, 1, name)
    if name in REFUSED:  # refused at train begin with a one-line error, not a crash after training
        assert "not supported on FSDP-sharded parameters" in sharded["refused"] and "refused" not in single
        return
    assert sharded["masks"] == single["masks"]  # identical masks, gathered from the shards
    if name != "kd_cached":  # each rank caches the rows it sees: its hit rate is its own
        assert sharded["stats"] == pytest.approx(single["stats"])  # global numbers, not one shard's
    assert sharded["teacher_sharded"] == name.startswith("kd")  # the teacher is sharded like the student
    a = load_file(os.path.join(sharded["folder"], "model.safetensors"))
    b = load_file(os.path.join(single["folder"], "model.safetensors"))
    assert_close_weights(name, a, b)
    model = AutoModelForSequenceClassification.from_pretrained(sharded["folder"])  # plain transformers
    layer = model.bert.encoder.layer[0]
    w = layer.attention.self.query.weight.detach()
    if name in ON_GRID:
        bits, group = ON_GRID[name]
        from hf_lite.quantization.grids import quantize_dequantize

        if "qat" in name:  # QAT's own grid: min-max of the final weights
            assert torch.allclose(quantize_dequantize(w, bits, group, True), w, atol=1e-6)
        else:  # the one-shot grid, saved next to the model
            assert os.path.isfile(os.path.join(sharded["folder"], "quantization_grid.safetensors"))
    if name.startswith(("gmp", "callback_gmp", "movement", "wanda", "sparsegpt")):
        assert float((w == 0).float().mean()) > 0.4
    elif name.startswith("structured"):
        assert layer.intermediate.dense.out_features == 32  # half the FFN removed
    if name in RESUME:  # resumed under FSDP2 from checkpoint-3 equals the uninterrupted run
        resumed = load_file(os.path.join(os.path.dirname(sharded["folder"]), "resumed", "model.safetensors"))
        for k in a:
            assert float((resumed[k] - a[k]).abs().max()) <= 1e-6, k


def test_zero3_and_fsdp1_are_refused_before_training():
    """Parameters the modifiers cannot read whole: a one-line error naming what to use instead."""
    from conftest import tiny_bert

    from hf_lite import CompressionCallback, RecipeError

    recipe = [{"type": "magnitude_pruning", "final_sparsity": 0.5}]
    model = tiny_bert()
    model.bert.pooler.dense.weight.ds_id = 0  # what DeepSpeed ZeRO-3 hangs on every parameter
    with pytest.raises(RecipeError, match="ZeRO-3 is not supported.*FSDP2"):
        CompressionCallback(recipe)._check_sharding(model)

    import torch.distributed.fsdp as fsdp

    class FakeFSDP1(torch.nn.Module):  # FSDP1 cannot be built without a device here; its type is what counts
        pass

    model = tiny_bert()
    model.bert.add_module("wrapped", FakeFSDP1())
    orig = fsdp.FullyShardedDataParallel
    fsdp.FullyShardedDataParallel = FakeFSDP1
    try:
        with pytest.raises(RecipeError, match="FSDP1 is not supported.*fsdp_version"):
            CompressionCallback(recipe)._check_sharding(model)
    finally:
        fsdp.FullyShardedDataParallel = orig
