"""govbank: bank files and e-licence usage records into one warehouse.

A plain package: it imports without Airflow and is tested without it. The DAGs in
``dags/`` only wire its stages together.
"""

__version__ = "0.1.0"
