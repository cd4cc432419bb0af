"""The tables dashboards read, rebuilt from the facts."""
