"""Plain-function ML jobs (train, evaluate, promote, predict); Dagster assets call these."""
