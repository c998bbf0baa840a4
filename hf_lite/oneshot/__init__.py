"""One-shot LLM compression (Wanda, SparseGPT, GPTQ, RTN): not built yet, see the open issue."""
