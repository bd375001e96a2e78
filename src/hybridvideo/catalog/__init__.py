"""The catalog: videos, their technical spec, uploads, jobs and events."""
