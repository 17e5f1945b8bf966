"""Alembic migrations for the sla-gateway database (run with `sla-gateway db upgrade`)."""
