"""SAMSum dialogue summarization with SmolLM2-135M-Instruct: the recipes/samsum_*.yaml recipes on a CPU
budget (bench/configs/samsum.yaml), ROUGE before and after, and the student's generation speed."""

from __future__ import annotations

import os
import statistics
import time

from bench.common import (
    OUT,
    SHARED,
    config,
    machine,
    merged,
    recipe_yaml,
    replace_in_strings,
    run_recipe,
    save,
    saved_rows,
)
from bench.sections import section


def samsum_recipe(name: str) -> dict:
    """recipes/samsum_<...>.yaml of config row ``name`` with the bench's budget; paths made absolute."""
    cfg = config("samsum")

    row = cfg["rows"][name]
    row = {"recipe": row} if isinstance(row, str) else dict(row)
    recipe = merged(merged(recipe_yaml(row.pop("recipe")), cfg["budget"]), row)
    recipe = replace_in_strings(replace_in_strings(recipe, "../shared/data", SHARED), "runs/", OUT + "/")
    recipe.pop("export", None)
    return recipe


def missing_rows(name: str) -> list[str]:
    """The rows whose output folder (bench/out/samsum_<row>) row ``name`` reads (model, teacher) and which
    are not on disk yet, those they need first, in the order to run them."""
    rows = config("samsum")["rows"]
    out: list[str] = []

    def visit(x) -> None:
        for v in x.values() if isinstance(x, dict) else x if isinstance(x, list) else []:
            visit(v)
        prefix = os.path.join(OUT, "samsum_")
        dep = x[len(prefix) :].split("/")[0] if isinstance(x, str) and x.startswith(prefix) else None
        if dep in rows and dep not in out and not os.path.isfile(os.path.join(OUT, f"samsum_{dep}", "config.json")):
            visit(samsum_recipe(dep))
            out.append(dep)

    visit(samsum_recipe(name))
    return out


def recipe_file(name: str) -> str:
    row = config("samsum")["rows"][name]
    return "recipes/" + (row if isinstance(row, str) else row["recipe"])


def samsum_row(name: str) -> dict:
    """Run config row ``name`` to bench/out/samsum_<name>: ROUGE and answer perplexity before and after."""
    recipe = samsum_recipe(name)
    folder = os.path.join(OUT, f"samsum_{name}")
    t = time.perf_counter()
    report = run_recipe(recipe, output_dir=folder, overwrite=True)
    m = report["metrics"]
    row = {
        "recipe": {k: recipe[k] for k in ("model", "modifiers", "training") if k in recipe},
        "recipe_file": recipe_file(name),
        "folder": folder,
        "before": {k[7:]: v for k, v in m["before"].items() if "rouge" in k or "perplexity" in k},
        "after": {k[6:]: v for k, v in m["after"].items() if "rouge" in k or "perplexity" in k},
        "after_oneshot": {k[8:]: v for k, v in m.get("after_oneshot", {}).items() if "rouge" in k},
        "student_layers": report.get("student_layers") or block_drop_kept(folder),  # the teacher blocks kept
        "parameters": report["compression"]["parameters"],
        "sparsity": report["compression"]["sparsity"],
        "size_on_disk_mib": report["compression"]["size_on_disk_bytes"] / 2**20,
        "train_rows": recipe["data"]["max_train_samples"],
        "epochs": recipe["training"]["num_train_epochs"],
        "samples": report["generation"]["samples"],
        "prompts": report["generation"]["prompts"],
        "wall_s": round(time.perf_counter() - t, 1),
        "timings_s": report["timings_s"],
    }
    print(f"[bench] samsum {name}: rougeL {row['before'].get('rougeL')} -> {row['after'].get('rougeL')}", flush=True)
    return row


def block_drop_kept(folder: str) -> list[int] | None:
    """The blocks a ``block_drop`` row kept, from its saved config (None for other rows)."""
    import json

    with open(os.path.join(folder, "config.json")) as f:
        return (json.load(f).get("hf_lite_block_drop") or {}).get("kept")


@section(names=True)
def section_samsum(names: list[str] | None = None) -> None:
    """SmolLM2-135M-Instruct on SAMSum: zero-shot (the dense SFT's "before"), the dense SFT, Wanda 50%,
    SparseGPT 2:4 and GPTQ int4 g32 on the SFT with KD recovery from it, LoRA r16 on the instruct model,
    and a 15-of-30-layer student distilled from the SFT (recipes/samsum_*.yaml). Then the generation speed
    of the SFT and the student side by side (same 20 prompts, 3 rounds, alternating, median tokens/s)."""
    rows = saved_rows("samsum")
    sft = os.path.join(OUT, "samsum_sft")
    cfg = config("samsum")
    studies = {"init_study": samsum_init_study, "onpolicy": samsum_onpolicy, "wide_test": samsum_wide_test,
               "full_test": samsum_wide_test}  # fmt: skip
    for name in [n for n in names or cfg["rows"] if n not in ("speed", *studies)]:
        for dep in missing_rows(name):  # a fresh machine has no bench/out: the models this row starts from
            rows[dep] = samsum_row(dep)
            save("samsum", {"protocol": section_samsum.__doc__ + PROTOCOL, "rows": rows})
        rows[name] = samsum_row(name)
        save("samsum", {"protocol": section_samsum.__doc__ + PROTOCOL, "rows": rows})
    speed = dict(cfg["speed"])
    student = os.path.join(OUT, f"samsum_{speed.pop('student')}")
    if names and "speed" in names and not os.path.isdir(student):
        raise SystemExit(f"samsum speed: no student folder {student}; run its row first (config `speed.student`)")
    for study, run in studies.items():  # only when named
        if names and study in names:
            needed = [cfg[study].get("teacher"), cfg[study].get("student"), *cfg[study].get("models", [])]
            for dep in needed:  # studies read these rows' models
                if dep and not os.path.isfile(os.path.join(OUT, f"samsum_{dep}", "config.json")):
                    raise SystemExit(f"samsum {study}: no model of row {dep}; run it first (--methods {dep} {study})")
            rows[study] = run(**cfg[study])
            save("samsum", {"protocol": section_samsum.__doc__ + PROTOCOL, "rows": rows})
    if os.path.isdir(student) and (names is None or "speed" in names):
        rows["speed"] = samsum_speed({"sft": sft, "student": student}, **speed)
        save("samsum", {"protocol": section_samsum.__doc__ + PROTOCOL, "rows": rows})


PROTOCOL = (
    " Data: the first 128 validation dialogues train (1 epoch, batch 4), the first 50 test dialogues are scored; "
    "greedy decoding, 48 new tokens, ROUGE F1 with stemming (rouge-score)."
)


def samsum_speed(folders: dict[str, str], prompts: int = 20, rounds: int = 3) -> dict:
    from hf_lite.chat import prompt_and_reference, read_chat_rows
    from hf_lite.core.recipe import DataSettings, GenerationSettings
    from hf_lite.generation import generate
    from hf_lite.models import load_model, load_tokenizer

    d = samsum_recipe("sft")["data"]
    settings = DataSettings(
        train=d["eval"], prompt_column="context", prompt_template=d["prompt_template"], max_train_samples=prompts
    )
    convs = [prompt_and_reference(c)[0] for c in read_chat_rows(settings)[0]]
    gen = GenerationSettings(max_new_tokens=48, batch_size=1)
    models = {k: load_model(v, "causal-lm").eval() for k, v in folders.items()}
    tok = load_tokenizer(folders["sft"])
    speeds: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for k, model in models.items():
            speeds[k].append(generate(model, tok, convs, gen)[1]["tokens_per_s"])
    med = {k: statistics.median(v) for k, v in speeds.items()}
    row = {
        "tokens_per_s": med,
        "all_rounds": speeds,
        "batch": 1,
        "prompts": prompts,
        "student_folder": os.path.basename(folders["student"]),
        "student_speedup": med["student"] / med["sft"],
        "machine": machine(),
    }
    print(f"[bench] samsum speed: {row}", flush=True)
    return row


def samsum_init_study(teacher: str, keep: int, rows: int, batch_size: int = 8) -> dict:
    """Ways to start a ``keep``-block student from the SFT in bench/out/samsum_<teacher>, each scored by its
    loss on the answers of the first ``rows`` training dialogues before any training (the measure
    ``init_from_teacher: {keep: N}`` ranks contiguous cuts by):

    - ``cut``: the best contiguous cut (``rank_contiguous_cuts``, what the student rows use);
    - ``laco_m``: that cut, with the last block before the gap absorbing the parameter differences of the
      next m left-out blocks (theta_l + sum_k (theta_{l+k} - theta_l); LaCo, Yang et al. 2024);
    - ``mean_m``: that block replaced by the mean of itself and the next m - 1 left-out blocks;
    - ``least_cosine``: the ``keep`` blocks that change their input most (lowest cosine between a block's
      input and output hidden states; ShortGPT's block influence, Men et al. 2024);
    - ``single_drop``: the ``keep`` blocks whose removal alone raises the loss most.
    Norm weights stay the kept block's own in the merges."""
    from transformers import DataCollatorForSeq2Seq

    from hf_lite.chat import chat_dataset, read_chat_rows
    from hf_lite.core.recipe import DataSettings
    from hf_lite.core.targets import decoder_blocks
    from hf_lite.distillation.student import (
        labelled_loss,
        most_influential_blocks,
        rank_contiguous_cuts,
        student_from_teacher,
    )
    from hf_lite.models import load_model, load_tokenizer

    folder = os.path.join(OUT, f"samsum_{teacher}")
    model, tok = load_model(folder, "causal-lm").eval(), load_tokenizer(folder)
    d = samsum_recipe(teacher)["data"]
    settings = DataSettings(
        train=d["train"], prompt_column=d["prompt_column"], response_column=d["response_column"],
        prompt_template=d["prompt_template"], max_train_samples=rows,
    )  # fmt: skip
    ds = chat_dataset(read_chat_rows(settings)[0], tok, d["max_length"], "train")
    collate = DataCollatorForSeq2Seq(tok)
    batches = [
        collate([dict(ds[j]) for j in range(i, min(i + batch_size, len(ds)))]) for i in range(0, len(ds), batch_size)
    ]

    def loss(m) -> float:
        return round(labelled_loss(m, batches), 4)

    n = model.config.num_hidden_layers
    ranked = rank_contiguous_cuts(model, batches, keep)
    cut = ranked[0][0]
    out = {"teacher": loss(model), "cut": ranked[0][1], "cut_layers": cut}
    gap = next(i for i in range(len(cut) - 1) if cut[i + 1] != cut[i] + 1)  # student index of the block before it
    _, tb = decoder_blocks(model)

    def merged(terms: list[tuple[int, float]]) -> float:
        student = student_from_teacher(model, cut).eval()
        block = decoder_blocks(student)[1][gap]
        sources = [dict(tb[t].named_parameters()) for t, _ in terms]
        for name, p in block.named_parameters():
            if "norm" not in name:
                p.data.copy_(sum(c * s[name].data for (_, c), s in zip(terms, sources)))
        return loss(student)

    last = cut[gap]
    for m in (1, 2, 3):
        out[f"laco_{m}"] = merged([(last, 1.0 - m)] + [(last + k, 1.0) for k in range(1, m + 1)])
    for m in (3, n - keep + 1):
        out[f"mean_{m}"] = merged([(last + k, 1.0 / m) for k in range(m)])
    chosen = most_influential_blocks(model, batches, keep)
    out["least_cosine"], out["least_cosine_layers"] = loss(student_from_teacher(model, chosen)), chosen
    single = [loss(student_from_teacher(model, [j for j in range(n) if j != i])) for i in range(n)]
    chosen = sorted(sorted(range(n), key=lambda i: -single[i])[:keep])
    out["single_drop"], out["single_drop_layers"] = loss(student_from_teacher(model, chosen)), chosen
    out["single_drop_each"] = single
    out["rows"], out["keep"] = len(ds), keep
    print(f"[bench] samsum init study: {out}", flush=True)
    return out


def samsum_wide_test(models: list[str], test: int | None = None, resamples: int = 2000) -> dict:
    """The models of the rows ``models`` (bench/out/samsum_<row>) scored again on the first ``test`` test dialogues (every
    one when None) instead of the rows' 50, with each row's own generation settings. The first row is the
    reference: each other row's ROUGE-L is given as a share of it, with a 95% interval from ``resamples``
    paired bootstrap draws of the dialogues (both models answer the same ones)."""
    import random

    from hf_lite.chat import prompt_and_reference, read_chat_rows
    from hf_lite.core.recipe import load_recipe
    from hf_lite.generation import evaluate_generation, rouge
    from hf_lite.models import load_model, load_tokenizer

    out: dict = {"rows": {}, "test": test}
    per_dialogue: dict[str, list[float]] = {}
    for name in models:
        recipe = samsum_recipe(name)
        recipe["data"]["max_eval_samples"] = test
        recipe["generation"]["max_samples"] = test
        recipe = load_recipe(recipe)
        folder = os.path.join(OUT, f"samsum_{name}")
        model, tok = load_model(folder, "causal-lm").eval(), load_tokenizer(folder)
        conversations = read_chat_rows(recipe.data)[1]
        t = time.perf_counter()
        metrics, answers = evaluate_generation(model, tok, conversations, recipe.generation, "test")
        references = [prompt_and_reference(c)[1] for c in conversations]
        per_dialogue[name] = [rouge([a], [r])["rougeL"] for a, r in zip(answers, references, strict=True)]
        out["rows"][name] = {
            **{k[5:]: v for k, v in metrics.items() if "rouge" in k},
            "dialogues": len(answers), "generate_s": round(time.perf_counter() - t, 1),
        }  # fmt: skip
        del model
    reference = per_dialogue[models[0]]
    rng = random.Random(0)
    draws = [[rng.randrange(len(reference)) for _ in reference] for _ in range(resamples)]
    for name in models[1:]:
        scores = per_dialogue[name]
        ratios = sorted(sum(scores[i] for i in d) / max(sum(reference[i] for i in d), 1e-12) for d in draws)
        row = out["rows"][name]
        row["kept_vs_reference"] = row["rougeL"] / out["rows"][models[0]]["rougeL"]
        row["kept_interval_95"] = [ratios[int(0.025 * resamples)], ratios[int(0.975 * resamples) - 1]]
    out["reference"], out["resamples"], out["machine"] = models[0], resamples, machine()
    print(f"[bench] samsum wide test: {out['rows']}", flush=True)
    return out


def samsum_onpolicy(
    student: str, teacher: str, steps: int, lmbda: float, beta: float, temperature: float, learning_rate: float
) -> dict:
    """On-policy KD as a further stage for the student of row ``student`` (bench/out/samsum_<student>):
    TRL's GKDTrainer, the student sampling answers to the row's training prompts (``lmbda``: the share of
    steps that sample; the others use the row's own training answers), the SFT ``teacher`` scoring them with
    the generalized JSD (``beta``), ``steps`` steps of 4 dialogues. ROUGE on the row's test dialogues before
    and after; the model is not saved."""
    import random

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import datasets
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    from hf_lite.chat import read_chat_rows
    from hf_lite.core.recipe import load_recipe
    from hf_lite.generation import evaluate_generation
    from hf_lite.models import load_model, load_tokenizer

    recipe = load_recipe(samsum_recipe(student))
    d, g = recipe.data, recipe.generation
    folder, teacher_folder = os.path.join(OUT, f"samsum_{student}"), recipe.teacher.name_or_path
    if teacher_folder != os.path.join(OUT, f"samsum_{teacher}"):
        raise SystemExit(f"samsum onpolicy: row {student} was taught by {teacher_folder}, not {teacher}")
    tok, model = load_tokenizer(folder), load_model(folder, "causal-lm")
    train, test = read_chat_rows(d)
    sft = load_model(teacher_folder, "causal-lm")
    if d.response_source == "teacher":  # the row's cached answers (generated when the row ran)
        from hf_lite.generation import teacher_answers, teacher_cache_file

        train = teacher_answers(sft, tok, train, g, teacher_cache_file(teacher_folder, train, g))
    train = [c for c in train if len(tok.apply_chat_template(c, return_dict=True)["input_ids"]) <= d.max_length]
    before, _ = evaluate_generation(model.eval(), tok, test, g, "before")
    args = GKDConfig(
        output_dir=os.path.join(OUT, "samsum_onpolicy_tmp"), max_steps=steps, per_device_train_batch_size=4,
        lmbda=lmbda, beta=beta, temperature=temperature, max_new_tokens=g.max_new_tokens,
        learning_rate=learning_rate, lr_scheduler_type="cosine", warmup_steps=3, max_length=d.max_length,
        report_to="none", save_strategy="no", logging_steps=10, disable_tqdm=True, seed=0,
        bf16=False,  # TRL turns bf16 on by default; the other rows train in fp32
    )  # fmt: skip
    random.seed(0)  # GKDTrainer draws which steps sample with `random`
    t = time.perf_counter()
    trainer = GKDTrainer(
        model=model.train(), teacher_model=sft, args=args, processing_class=tok,
        train_dataset=datasets.Dataset.from_list([{"messages": c} for c in train]),
    )  # fmt: skip
    out = trainer.train()
    train_s = time.perf_counter() - t
    after, answers = evaluate_generation(trainer.model.eval(), tok, test, g, "after")
    row = {
        "student": student, "teacher": teacher, "steps": steps, "lmbda": lmbda, "beta": beta,
        "temperature": temperature, "learning_rate": learning_rate, "train_rows": len(train),
        "before": {k[7:]: v for k, v in before.items() if "rouge" in k},
        "after": {k[6:]: v for k, v in after.items() if "rouge" in k},
        "train_loss": out.training_loss, "train_s": round(train_s, 1), "s_per_step": round(train_s / steps, 1),
        "samples": answers[:3], "machine": machine(),
    }  # fmt: skip
    print(f"[bench] samsum on-policy: {row}", flush=True)
    return row
