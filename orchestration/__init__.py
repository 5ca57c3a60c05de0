"""orchestration: everything distributed around the comol library (Ray Train/Tune, MLflow, reports)."""
