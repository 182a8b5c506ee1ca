"""Database: models, engine/session factory, migrations (Alembic, never create_all)."""
