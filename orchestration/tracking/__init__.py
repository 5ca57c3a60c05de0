"""MLflow tracking: the run layout every writer (sweeps) and reader (reports, promotion) agrees on.

Modules: ``schema`` (names and layout), ``store`` (which store, one client), ``writer`` / ``reader`` (the two
sides of the record), ``queries`` (searches), ``labels`` (how a configuration is named), ``seeds`` (how its seeds
are summarised).
"""
