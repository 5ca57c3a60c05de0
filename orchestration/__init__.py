"""orchestration: everything distributed around the comol library (Ray Train/Tune, MLflow, reports)."""

import time as _time

# When this process began importing the project: a training worker's start-up counts its imports from here
# (orchestration.training.startup).
IMPORT_STARTED_AT = _time.time()
