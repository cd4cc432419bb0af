FROM apache/airflow:3.3.2-python3.11 AS govbank
# The govbank image: Airflow 3.3.2 plus exactly the versions in uv.lock, the same set
# the tests run against, and govbank installed as its wheel (reference data, migrations
# and expectation suites inside). Nothing is installed when a container starts.

# A uv that reads this lock file's format, used only at build time.
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv-lock

# The dependencies: a layer that changes only with the lock (the workspace member's
# pyproject is there so uv sees the whole workspace; dev packages are not exported).
COPY --chown=airflow:0 pyproject.toml uv.lock hatch_build.py /opt/airflow/src/
COPY --chown=airflow:0 tools/govbank_dev/pyproject.toml /opt/airflow/src/tools/govbank_dev/
RUN uv-lock export --project /opt/airflow/src --frozen --no-dev --no-hashes --no-emit-project \
        --no-emit-workspace --output-file /opt/airflow/src/requirements.txt \
    && uv pip install --no-cache -r /opt/airflow/src/requirements.txt

# govbank itself, built into a wheel and installed without touching the dependencies.
COPY --chown=airflow:0 include/govbank/ /opt/airflow/src/include/govbank/
COPY --chown=airflow:0 expectations/ /opt/airflow/src/expectations/
RUN uv-lock build --wheel --out-dir /opt/airflow/src/dist /opt/airflow/src \
    && uv pip install --no-cache --no-deps /opt/airflow/src/dist/govbank-*.whl \
    && rm -rf /opt/airflow/src/dist

# The district's configuration: the banks' contracts (the compose stack mounts them).
COPY --chown=airflow:0 include/contracts/ /opt/airflow/include/contracts/
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/

ENV AIRFLOW__CORE__LOAD_EXAMPLES=False \
    GOVBANK_LOCAL_DIR=/opt/airflow/govbank \
    GOVBANK_CONTRACTS_DIR=/opt/airflow/include/contracts

# Created here so that a named volume mounted on it starts owned by the airflow user.
RUN mkdir -p /opt/airflow/govbank /opt/airflow/auth \
    && cd / && python -c "import airflow.providers.sftp, airflow.providers.celery, govbank.config.contracts, govbank.orchestration.workers; from govbank.domain.reference import towns; assert towns()"


# The reference e-licence usage API for the compose stack: the govbank image plus the
# dev package govbank_dev (the runtime image does not carry it).
FROM govbank AS elicense-api
COPY --chown=airflow:0 tools/govbank_dev/ /opt/airflow/src/tools/govbank_dev/
RUN uv-lock build --wheel --out-dir /opt/airflow/src/dist /opt/airflow/src/tools/govbank_dev \
    && uv pip install --no-cache --no-deps /opt/airflow/src/dist/govbank_dev-*.whl \
    && rm -rf /opt/airflow/src/dist \
    && cd / && python -c "import govbank_dev.elicense_server"


# The default target is the runtime image.
FROM govbank
