FROM apache/airflow:3.3.2-python3.11
# The govbank image: Airflow 3.3.2 plus exactly the versions in uv.lock, the same set
# the tests run against. Nothing is installed when a container starts.

# A uv that reads this lock file's format, used only to export the lock at build time.
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv-lock

COPY --chown=airflow:0 pyproject.toml uv.lock /opt/airflow/lock/
RUN uv-lock export --project /opt/airflow/lock --frozen --no-dev --no-hashes --no-emit-project \
        --output-file /opt/airflow/lock/requirements.txt \
    && uv pip install --no-cache -r /opt/airflow/lock/requirements.txt

COPY --chown=airflow:0 include/ /opt/airflow/include/
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 expectations/ /opt/airflow/expectations/

ENV PYTHONPATH=/opt/airflow/include \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    GOVBANK_LOCAL_DIR=/opt/airflow/govbank \
    GOVBANK_CONTRACTS_DIR=/opt/airflow/include/contracts \
    GOVBANK_EXPECTATIONS_DIR=/opt/airflow/expectations

# Created here so that a named volume mounted on it starts owned by the airflow user.
RUN mkdir -p /opt/airflow/govbank /opt/airflow/auth \
    && python -c "import airflow.providers.sftp, airflow.providers.celery, govbank.config.contracts"
