#!/bin/sh
# Start MLflow with basic auth. The auth config is written at start from the environment,
# so no credential is ever baked into the image or committed.
set -eu
: "${MLFLOW_ADMIN_USER:?set MLFLOW_ADMIN_USER in .env}"
: "${MLFLOW_ADMIN_PASSWORD:?set MLFLOW_ADMIN_PASSWORD in .env}"
: "${MLFLOW_BACKEND_STORE_URI:?}"
: "${MLFLOW_AUTH_DATABASE_URI:?}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?}"
umask 077
auth_ini="${HOME}/basic_auth.ini"
cat > "$auth_ini" <<INI
[mlflow]
default_permission = READ
database_uri = ${MLFLOW_AUTH_DATABASE_URI}
admin_username = ${MLFLOW_ADMIN_USER}
admin_password = ${MLFLOW_ADMIN_PASSWORD}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
export MLFLOW_AUTH_CONFIG_PATH="$auth_ini"
exec mlflow server \
  --app-name basic-auth \
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
  --host 0.0.0.0 --port 5000 \
  --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-mlflow:5000,localhost:5000,127.0.0.1:5000}"
