"""Multi-GPU runs of the FSDP2 comparison in tests/core/test_fsdp.py (NCCL, no accelerate patch needed),
and DeepSpeed ZeRO-3 refused before training. Skipped without 2 CUDA GPUs (`make test-gpu`)."""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "core"))
from test_fsdp import RECIPES, compare, launch  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs"),
]


@pytest.fixture(scope="module")
def gpu_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp_gpu")
    launch(root, 2, 4, device="cuda")
    launch(root, 1, 8, device="cuda")
    return root


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_fsdp2_on_two_gpus_matches_one(gpu_runs, name):
    compare(gpu_runs, name)


def test_zero3_is_refused_before_training(tmp_path):
    pytest.importorskip("deepspeed")
    from conftest import sentiment_rows, tiny_bert
    from transformers import TrainingArguments

    from hf_lite import LiteTrainer, RecipeError

    ds_config = {"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": "auto"}
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, report_to="none", deepspeed=ds_config)
    rows = sentiment_rows(8)
    data = [{"input_ids": [2, 5 + i % 5, 3], "labels": y} for i, (_, y) in enumerate(rows)]
    trainer = LiteTrainer(model=tiny_bert(), args=args, train_dataset=data,
                          recipe=[{"type": "magnitude_pruning", "final_sparsity": 0.5}])  # fmt: skip
    with pytest.raises(RecipeError, match="ZeRO-3"):
        trainer.train()
