"""One trainer for every model family, with small per-objective tasks."""
