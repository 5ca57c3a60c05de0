"""MLflow tracking: the run layout every writer (sweeps) and reader (reports, promotion) agrees on."""
