"""What the runs say, from the compact results summary alone (no model, no trainer imported): the
summary itself, paired statistics, the declared claims and their verdicts, derived numbers, the
tables of RESULTS.md, every figure and its drawing, the task-embedding study and the paper scale's
generated settings tables."""
