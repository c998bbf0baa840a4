"""One rank of the sharded-teacher memory measurement (launched by `make bench SECTION=fsdp_teacher`).

Distillation under FSDP2, 2 processes on a CPU mesh (gloo): a BERT-base-sized teacher and a small
student. ``--teacher sharded`` is hf_lite's behaviour; ``--teacher full`` keeps a whole teacher per rank
(as before sharding existed). Each rank writes ``OUT/rank<R>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import torch


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def keep_fsdp_on_cpu() -> None:
    """accelerate turns an FSDP plugin on CPU into DDP (MULTI_CPU); keep FSDP for this measurement."""
    import accelerate.state as st
    from accelerate.utils import DistributedType

    init = st.AcceleratorState.__init__

    def patched(self, *a, **k):
        init(self, *a, **k)
        if k.get("fsdp_plugin") is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type, self.fsdp_plugin = DistributedType.FSDP, k["fsdp_plugin"]

    st.AcceleratorState.__init__ = patched


def bert(hidden: int, layers: int, seed: int):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=1000, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                     intermediate_size=4 * hidden, max_position_embeddings=64, num_labels=2)  # fmt: skip
    return BertForSequenceClassification(cfg)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--teacher", choices=["sharded", "full"], required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=4)
    a = p.parse_args()
    torch.set_num_threads(1)
    keep_fsdp_on_cpu()
    if a.teacher == "full":  # the behaviour before teacher sharding: a whole copy on every rank
        import hf_lite.core.distributed as dist

        dist.shard_as = lambda module, like: module
    import datasets
    from transformers import TrainingArguments

    from hf_lite import LiteTrainer

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (64, 32), generator=g)
    ds = datasets.Dataset.from_dict({"input_ids": ids.tolist(), "labels": (ids[:, 0] % 2).tolist()})
    args = TrainingArguments(
        output_dir=a.out, per_device_train_batch_size=4, max_steps=a.steps, report_to="none", save_strategy="no",
        use_cpu=True, disable_tqdm=True, fsdp="full_shard",
        fsdp_config={"fsdp_version": 2, "transformer_layer_cls_to_wrap": ["BertLayer"]},
    )  # fmt: skip
    teacher = bert(768, 12, seed=1)  # BERT-base shape with a small vocabulary
    student = bert(128, 2, seed=0)
    recipe = [{"type": "distillation", "alpha": 0.5, "temperature": 2.0}]
    trainer = LiteTrainer(model=student, args=args, train_dataset=ds, recipe=recipe, teacher_model=teacher)
    t = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - t
    local = sum(
        (p.to_local() if hasattr(p, "to_local") else p).numel() * p.element_size() for p in teacher.parameters()
    )
    row = {
        "teacher": a.teacher,
        "rank": int(os.environ.get("RANK", 0)),
        "teacher_parameters": sum(p.numel() for p in teacher.parameters()),
        "teacher_bytes_on_rank_mib": round(local / 2**20, 1),
        "rss_after_train_mib": round(rss_mib(), 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "train_s": round(elapsed, 2),
        "steps": a.steps,
    }
    with open(os.path.join(a.out, f"rank{row['rank']}.json"), "w") as f:
        json.dump(row, f)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
