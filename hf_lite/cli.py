"""``hf-lite`` command line: run, validate, report, student, push."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from .core.settings import RecipeError


def _cmd_run(a: argparse.Namespace) -> int:
    from .api import run_recipe
    from .core.recipe import load_recipe

    recipe = load_recipe(a.recipe, a.set)
    report = run_recipe(recipe, output_dir=a.output_dir, overwrite=a.overwrite or None, resume=a.resume)
    from .core.distributed import is_main

    if not is_main():  # under torchrun: rank 0 reports
        return 0
    out = a.output_dir or recipe.export.output_dir
    after = report["metrics"].get("after", {})
    before = report["metrics"].get("before", {})
    print(f"\nhf-lite: model written to {out}")
    print(f"hf-lite: report at {os.path.join(out, 'report.json')}, model card at {os.path.join(out, 'README.md')}")
    for k, v in after.items():
        if k.endswith(("accuracy", "f1", "perplexity")):
            ref = before.get(k.replace("after_", "before_"))
            print(f"hf-lite: {k.replace('after_', '')}: {ref if ref is None else round(ref, 4)} -> {round(v, 4)}")
    comp = report["compression"]
    print(
        f"hf-lite: sparsity {comp['sparsity']:.2%}, bits {comp['bits'] or 'float'}, "
        f"{comp['size_on_disk_bytes'] / 2**20:.1f} MiB on disk"
    )
    if "onnx" in report.get("deployment", {}):
        from .deploy.onnx import deployment_summary

        print(f"hf-lite: {deployment_summary(report['deployment']['onnx'])}")
    return 0


def _cmd_validate(a: argparse.Namespace) -> int:
    from .api import preflight
    from .core.recipe import load_recipe

    recipe = load_recipe(a.recipe, a.set)
    preflight(recipe)
    print(
        f"ok: {a.recipe}: model {recipe.model.name_or_path} ({recipe.model.task}), "
        f"{len(recipe.modifier_specs)} modifier(s): {[m.describe() for m in recipe.build_modifiers()]}"
    )
    return 0


def _cmd_report(a: argparse.Namespace) -> int:
    from .report import format_report, report_folder

    rep = report_folder(a.model_dir)
    print(json.dumps(rep, indent=2) if a.json else format_report(rep))
    return 0


def _cmd_student(a: argparse.Namespace) -> int:
    from .distillation.student import build_student_folder

    layers = [int(x) for x in a.layers.split(",")]
    build_student_folder(a.from_dir, layers, a.out, task=a.task, overwrite=a.overwrite)
    print(f"hf-lite: student with layers {layers} written to {a.out}")
    return 0


def _cmd_push(a: argparse.Namespace) -> int:
    from .hub import push_folder

    print(push_folder(a.model_dir, a.repo_id, private=a.private))
    return 0


def _cmd_export(a) -> int:
    from .deploy import export_folder
    from .report import folder_size

    out, carded = export_folder(a.model_dir, a.format, a.out, a.gguf_type)
    if carded:
        print(f"added {a.format} to {os.path.join(a.model_dir, 'report.json')} and the model card (README.md)")
    before = folder_size(a.model_dir) / 2**20
    if a.format == "onnx":
        from .deploy.onnx import FILES

        sizes = ", ".join(f"{n} {os.path.getsize(os.path.join(out, n)) / 2**20:.1f} MiB" for n in FILES.values())
        print(f"wrote {out} ({sizes}; {before:.1f} MiB of safetensors before)")
        return 0
    size = folder_size(out, (".gguf",) if a.format == "gguf" else (".safetensors",))
    print(f"wrote {out} ({size / 2**20:.1f} MiB of weights; {before:.1f} MiB before)")
    return 0


def _chat_gguf(a) -> int:
    """``hf-lite chat FILE.gguf``: the same conversation loop, run by llama.cpp (llama-cpp-python)."""
    try:
        import llama_cpp
    except ImportError as e:
        raise RecipeError("chat: a .gguf file runs with llama.cpp: pip install llama-cpp-python") from e
    llm = llama_cpp.Llama(a.model_dir, n_ctx=2048, verbose=False)
    history = [{"role": "system", "content": a.system}] if a.system else []
    for line in [a.prompt] if a.prompt is not None else sys.stdin:
        if not line.strip():
            continue
        history.append({"role": "user", "content": line.strip()})
        parts = []
        for chunk in llm.create_chat_completion(history, max_tokens=a.max_new_tokens, temperature=0.0, stream=True):
            piece = chunk["choices"][0]["delta"].get("content") or ""
            parts.append(piece)
            print(piece, end="", flush=True)
        print()
        history.append({"role": "assistant", "content": "".join(parts).strip()})
    return 0


def _cmd_chat(a) -> int:
    """Answer --prompt once, or read messages from stdin until EOF (a conversation with history)."""
    from .generation import stream_reply
    from .models import load_model, load_tokenizer

    if a.model_dir.endswith(".gguf") and os.path.isfile(a.model_dir):
        return _chat_gguf(a)
    if not os.path.isdir(a.model_dir) or not os.path.isfile(os.path.join(a.model_dir, "config.json")):
        raise RecipeError(f"chat: {a.model_dir!r} is not a model folder (no config.json); give an exported folder")
    from transformers import AutoConfig

    enc_dec = bool(getattr(AutoConfig.from_pretrained(a.model_dir), "is_encoder_decoder", False))
    tokenizer = load_tokenizer(a.model_dir)
    model = load_model(a.model_dir, "seq2seq" if enc_dec else "causal-lm", key="MODEL_DIR").eval()
    history = [{"role": "system", "content": a.system}] if a.system else []
    templated = bool(getattr(tokenizer, "chat_template", None)) and not enc_dec
    if a.system and not templated:
        raise RecipeError("chat: --system needs a model whose tokenizer has a chat template")
    interactive = a.prompt is None
    if interactive and sys.stdin.isatty():
        print("hf-lite chat: type a message (Ctrl-D to end)", file=sys.stderr)
    for line in [a.prompt] if not interactive else sys.stdin:
        text = line.strip()
        if not text:
            continue
        history.append({"role": "user", "content": text})
        reply = stream_reply(model, tokenizer, history if templated else text, a.max_new_tokens)
        history.append({"role": "assistant", "content": reply})
        if not templated:
            history.clear()  # without a chat template each line is answered on its own
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-lite", description="Compress transformers models with a YAML recipe.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_recipe_commands(sub)
    _add_folder_commands(sub)
    return parser


def _add_recipe_commands(sub) -> None:
    """``run``, ``validate``: the commands that read a recipe."""
    p = sub.add_parser("run", help="run a whole job from a recipe")
    p.add_argument("recipe")
    p.add_argument("--output-dir", help="overrides export.output_dir")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. training.max_steps=50",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace a non-empty output folder (once the new one is complete)"
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("validate", help="check a recipe without running it")
    p.add_argument("recipe")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=_cmd_validate)


def _add_folder_commands(sub) -> None:
    """``report``, ``student``, ``export``, ``chat``, ``push``: the commands that read a model folder."""
    p = sub.add_parser("report", help="parameters, sparsity per layer, bits and size of a saved model")
    p.add_argument("model_dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("student", help="build a shallower student from a teacher's layers")
    p.add_argument("--from", dest="from_dir", required=True)
    p.add_argument(
        "--layers",
        required=True,
        help="comma-separated teacher layer indices, e.g. 0,2,4 (to let the blocks be chosen by their loss on "
        "your data, use the recipe key model.init_from_teacher: {keep: N} instead)",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--task", default="sequence-classification", choices=["sequence-classification", "causal-lm"])
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_student)

    p = sub.add_parser("export", help="write a deployment format for an exported folder")
    p.add_argument("model_dir")
    p.add_argument("--format", required=True, choices=["compressed-tensors", "onnx", "gguf"])
    p.add_argument(
        "--gguf-type",
        default="auto",
        choices=["auto", "f32", "f16", "q8_0", "q4_0", "q4_1"],
        help="gguf: the block Linears' type (auto: the one that holds the model's hf_lite grid exactly, else q8_0)",
    )
    p.add_argument("--out", help="default: MODEL_DIR/<format>")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "chat", help="talk to an exported causal LM, encoder-decoder or .gguf file (streams its answers)"
    )
    p.add_argument("model_dir")
    p.add_argument("--prompt", help="answer this one message and exit (default: read messages from stdin)")
    p.add_argument("--system", help="a system message put first")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.set_defaults(func=_cmd_chat)

    p = sub.add_parser("push", help="upload an exported folder to the Hub")
    p.add_argument("model_dir")
    p.add_argument("--repo-id", required=True)
    p.add_argument("--private", action="store_true")
    p.set_defaults(func=_cmd_push)


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.command == "run" else logging.WARNING, format="%(message)s")
    try:
        return a.func(a)
    except (RecipeError, FileNotFoundError) as e:
        print(f"hf-lite: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hf-lite: interrupted; `hf-lite run RECIPE --resume` continues from the last checkpoint", file=sys.stderr)
        return 130
    except Exception:
        print(
            "hf-lite: internal error: this is a bug in hf_lite, not in your recipe; please report it on the "
            "hf_lite issue tracker with the traceback below and the output of `pip show hf-lite`",
            file=sys.stderr,
        )
        raise


if __name__ == "__main__":
    sys.exit(main())
