"""detente's own store: raw records as each CRM returned them, cursors, quarantine, runs, and
the unified model. SQLModel tables on SQLite (the embedded default) or PostgreSQL."""
