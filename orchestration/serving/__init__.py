"""An adapter as an MLflow Model: the pyfunc that loads base + adapter and completes prompts (``model``), and the
folder and logged model it is saved as (``package``), so ``mlflow.pyfunc.load_model`` and ``mlflow models serve``
work on every trial's adapter and every registered version."""
