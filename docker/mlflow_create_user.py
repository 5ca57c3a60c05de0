#!/usr/bin/env python3
"""Make sure a non-admin MLflow account exists with the password from the environment (idempotent).

Why: the Ray cluster runs whatever code is submitted to it, with its environment. Giving jobs a plain account
instead of the admin one means a job can log runs and register models but never manage users or permissions.
The admin credentials come from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (read by MLflow's client);
the account's name is the argument and its password comes from $MLFLOW_NEW_USER_PASSWORD (never argv, which
any local user can read). Run by compose's ``mlflow-users`` service and by the end-to-end test.
"""

from __future__ import annotations

import os
import sys


def ensure_user(tracking_uri: str, username: str, password: str) -> str:
    """Create ``username`` or reset its password to ``password``; return what was done."""
    from mlflow.exceptions import RestException
    from mlflow.server import get_app_client

    auth = get_app_client("basic-auth", tracking_uri=tracking_uri)
    try:
        auth.get_user(username)
    except RestException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        auth.create_user(username, password)
        return "created"
    auth.update_user_password(username, password)  # .env stays the source of truth on every start
    return "password updated"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: mlflow-create-user USERNAME   (password in $MLFLOW_NEW_USER_PASSWORD)", file=sys.stderr)
        return 2
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    password = os.environ.get("MLFLOW_NEW_USER_PASSWORD")
    if not uri or not password:
        print("set MLFLOW_TRACKING_URI and MLFLOW_NEW_USER_PASSWORD", file=sys.stderr)
        return 2
    print(f"mlflow user {argv[0]}: {ensure_user(uri, argv[0], password)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
