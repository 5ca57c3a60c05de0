"""The MLflow model registry side: promote a sweep's champion, load it back as a ready model."""
