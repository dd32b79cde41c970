"""What is run: the scales, the recipes (each a list of runs: method entry, seed, TrainConfig), the
paper scale's per-task settings from the official scripts, the causal-LM recipes and the papers'
reported numbers.  Nothing here trains or draws; ``run/`` trains these runs, ``results/`` reads them."""
