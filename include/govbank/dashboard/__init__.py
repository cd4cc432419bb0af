"""What people see: the district's dashboard and the data engineer's Data Docs pages.

- :func:`create_dashboard_app`: the 政银合作 dashboard, read from the marts with the
  dashboard role only (``python -m govbank.dashboard`` serves it behind its own login;
  the Airflow plugin in ``plugins/`` mounts it behind Airflow's).
- :func:`create_data_docs_app`: the files received and their Great Expectations Data
  Docs, served so that they work without the internet.
"""

from govbank.dashboard.app import create_dashboard_app, render_page
from govbank.dashboard.auth import Gate, PasswordGate
from govbank.dashboard.data import dashboard_url, load, make_dashboard_engine
from govbank.dashboard.datadocs import TaskScope, create_data_docs_app, list_files

__all__ = [
    "Gate",
    "PasswordGate",
    "TaskScope",
    "create_dashboard_app",
    "create_data_docs_app",
    "dashboard_url",
    "list_files",
    "load",
    "make_dashboard_engine",
    "render_page",
]
