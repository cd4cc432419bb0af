"""The warehouse's tables, engines, roles and migrations."""
