"""Background work: one task-queue library (huey), embedded or Redis-backed."""
