"""Training the protocol: the runner (learning-rate search, then every reported run, resumable),
each run's analysis, the search's choice of rates, the plan (order, steps, GPU hours), the
miniature check, the notebooks' entry and the `ranklab reproduce` / `ranklab figures` commands."""
