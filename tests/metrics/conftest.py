"""The metrics tests read the audit tests' stores (the session's world, on SQLite and PostgreSQL)."""

from tests.reconcile.conftest import module_store_url, pulled, rules, world  # noqa: F401 - fixtures reused
