"""What the DAGs and the plugin call: Airflow connections, settings, alerts."""
