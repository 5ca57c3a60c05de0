#!/bin/sh
# The MLflow tracking server: basic auth, a PostgreSQL backend store, artifacts proxied to an object store
# (or a folder). Everything comes from the environment, so no credential is baked into the image or committed:
# the auth config is written at start, mode 600, into $HOME; the admin account is created on the first start
# from MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD, which MLflow reads itself (afterwards change
# it with MLflow's update-password API: the variables are ignored once the admin exists).
# Used by docker-compose.yml and, unchanged, by tests/cluster/test_end_to_end.py.
set -eu
: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI (postgresql://USER:PASSWORD@HOST:PORT/DB)}"
: "${MLFLOW_AUTH_DATABASE_URI:?set MLFLOW_AUTH_DATABASE_URI (where users and permissions live)}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?set MLFLOW_ARTIFACTS_DESTINATION (s3://BUCKET or a folder)}"
: "${MLFLOW_AUTH_ADMIN_USERNAME:?set MLFLOW_AUTH_ADMIN_USERNAME in .env}"
: "${MLFLOW_AUTH_ADMIN_PASSWORD:?set MLFLOW_AUTH_ADMIN_PASSWORD in .env}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set MLFLOW_FLASK_SERVER_SECRET_KEY in .env}"

# .env.example's placeholders are not secrets: refuse to serve with them.
for name in MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY MLFLOW_BACKEND_STORE_URI MLFLOW_AUTH_DATABASE_URI; do
  eval "value=\${$name}"
  case "$value" in
    *change-me*)
      echo "mlflow-entrypoint: $name still holds a change-me placeholder from .env.example; set a real secret" >&2
      exit 2
      ;;
  esac
done

umask 077
# Every request checks its password with scrypt (~0.1-1 s of CPU): successful checks are cached per worker for
# MLFLOW_AUTH_CACHE_TTL_SECONDS (0 turns the cache off); a changed password may still work that long.
auth_ini="${HOME:?}/basic_auth.ini"
# configparser interpolates '%': a URL-encoded password (%40 …) must be written as '%%'.
auth_db=$(printf '%s' "$MLFLOW_AUTH_DATABASE_URI" | sed 's/%/%%/g')
cat > "$auth_ini" <<INI
[mlflow]
default_permission = ${MLFLOW_DEFAULT_PERMISSION:-READ}
database_uri = ${auth_db}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_TTL_SECONDS:-60}
INI
export MLFLOW_AUTH_CONFIG_PATH="$auth_ini"

exec mlflow server \
  --app-name basic-auth \
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --serve-artifacts \
  --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
  --host "${MLFLOW_HOST:-0.0.0.0}" --port "${MLFLOW_PORT:-5000}" \
  --workers "${MLFLOW_WORKERS:-4}" \
  --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-mlflow:*,localhost:*,127.0.0.1:*}"
