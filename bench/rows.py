"""Which benchmark rows are core (`make bench`) and which are studies; shared by run.py and report.py
(this module imports nothing, so the report does not load torch)."""

# the one-shot rows issue 7 asks for, plus our best g128 setting; the others are `oneshot_variants`
ONESHOT_CORE = ["dense", "magnitude50", "wanda50", "sparsegpt50", "magnitude24", "wanda24", "sparsegpt24",
                "rtn_g128", "gptq_g128", "gptq_g128_asym_mse_actorder"]  # fmt: skip
