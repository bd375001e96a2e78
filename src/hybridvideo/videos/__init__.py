"""Video use cases: adding masters to the archive and the catalog."""
