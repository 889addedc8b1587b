"""Framework and database integrations. Each module imports only its own framework, so
`bitacora.integrations.flask` works without Django or SQLAlchemy installed."""
