"""The callback with TRL's SFTTrainer, stats in the logs, and a 2-process gloo run."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, tiny_llama


def test_sft_trainer_with_callback(tmp_path, tokenizer):
    trl = pytest.importorskip("trl")
    import datasets

    from hf_lite import CompressionCallback
    from hf_lite.pruning.masks import sparsity_of

    ids = [[(i * 7 + j) % 25 + 1 for j in range(16)] for i in range(32)]
    ds = datasets.Dataset.from_dict({"input_ids": ids})
    args = trl.SFTConfig(
        output_dir=str(tmp_path / "sft"),
        max_steps=4,
        per_device_train_batch_size=4,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        logging_steps=2,
        disable_tqdm=True,
        dataset_text_field=None,
    )
    cb = CompressionCallback(
        [{"type": "magnitude_pruning", "final_sparsity": 0.5, "start": 0, "end": 2, "update_every": 1}]
    )
    model = tiny_llama()
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer, callbacks=[cb])
    trainer.train()
    w = model.model.layers[0].mlp.up_proj.weight
    assert sparsity_of(w) == pytest.approx(0.5)
    assert any("hf_lite/magnitude_pruning/sparsity" in log for log in trainer.state.log_history)


DDP_SCRIPT = r"""
import json, os, sys, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
from conftest import tiny_bert, sentiment_rows, make_tokenizer, training_args
import datasets
from hf_lite import LiteTrainer
tok = make_tokenizer({tok!r})
rows = sentiment_rows(64)
enc = tok([r[0] for r in rows], truncation=True, max_length=16, padding="max_length")
enc["labels"] = [r[1] for r in rows]
ds = datasets.Dataset.from_dict(dict(enc))
from pathlib import Path
args = training_args(Path({out!r}), per_device_train_batch_size={bs}, max_steps=6, learning_rate=5e-3)
recipe = {recipe}
teacher = tiny_bert(seed=1, dropout=0.0, hidden={teacher_hidden}) if recipe[0]["type"] == "distillation" else None
trainer = LiteTrainer(model=tiny_bert(dropout=0.0), args=args, train_dataset=ds, recipe=recipe, teacher_model=teacher)
trainer.train()
m = trainer.session.modifiers[0]
digest = sum(float((v * (i + 1)).sum()) for i, v in enumerate(getattr(m, "masks", {{}}).values()))
first = next(log for log in trainer.state.log_history if "loss" in log)
rank = int(os.environ.get("RANK", 0))
w = sum(p.detach().abs().sum() for p in trainer.model.parameters() if p.requires_grad)
with open(os.path.join({out!r}, f"rank{{rank}}.json"), "w") as f:
    json.dump({{"digest": digest, "loss": trainer.state.log_history[-1]["train_loss"], "w": float(w.abs().sum()),
               "first_loss": first["loss"], "soft": first.get("loss/distillation/soft"),
               "hidden": first.get("loss/distillation/hidden"), "dropped": m.state_dict().get("dropped"),
               "final_layers": trainer.final_model.config.num_hidden_layers}}, f)
if torch.distributed.is_initialized():  # an orderly exit: gloo threads left running can abort the process
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
"""


MOVEMENT = [{"type": "movement_pruning", "final_sparsity": 0.6, "start": 1, "end": 4, "update_every": 1}]
KD = [{"type": "distillation", "temperature": 2.0, "alpha": 0.7, "hidden_weight": 1.0}]
LORA = [{"type": "lora", "r": 4, "alpha": 8, "dropout": 0.0, "merge": False}]  # no dropout: RNG streams differ per rank
BLOCK_DROP = [{"type": "block_drop", "keep": 1, "start": 2, "end": 4}]  # chosen on rank 0's batches, broadcast


KD_WIDE = [dict(KD[0])]  # a teacher twice as wide: the student's hidden states pass a trained projection


@pytest.mark.distributed
@pytest.mark.parametrize(
    "recipe",
    [MOVEMENT, KD, KD_WIDE, LORA, BLOCK_DROP],
    ids=["movement_pruning", "distillation", "distillation_wider", "lora", "block_drop"],
)
def test_two_process_gloo_matches_one_process(tmp_path, recipe):
    """torchrun with 2 CPU processes (gloo): every rank holds the same masks, and the run (weights,
    and for KD the logged loss terms) matches one process on the same global batch."""
    tests = os.path.join(REPO, "tests")
    results = {}
    for name, nproc, bs in (("ddp", 2, 4), ("single", 1, 8)):
        out = tmp_path / name
        out.mkdir()
        script = tmp_path / f"{name}.py"
        script.write_text(
            DDP_SCRIPT.format(
                tests=tests,
                tok=str(tmp_path / "tok"),
                out=str(out),
                bs=bs,
                recipe=repr(recipe),
                teacher_hidden=64 if recipe is KD_WIDE else 32,
            )
        )
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--master_port",
            str(29500 + nproc),
            str(script),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[name] = [json.load(open(out / f"rank{r}.json")) for r in range(nproc)]
    r0, r1 = results["ddp"]
    assert r0["digest"] == r1["digest"] and r0["w"] == r1["w"]
    assert r0["dropped"] == r1["dropped"] and r0["final_layers"] == r1["final_layers"]
    single = results["single"][0]
    assert r0["digest"] == single["digest"]
    assert r0["w"] == pytest.approx(single["w"], rel=1e-4)
    assert r0["first_loss"] == pytest.approx(single["first_loss"], rel=1e-3)
    if recipe is KD or recipe is KD_WIDE:
        assert r0["soft"] == pytest.approx(single["soft"], rel=1e-3)
        assert r0["hidden"] == r1["hidden"] == pytest.approx(single["hidden"], rel=1e-4)
