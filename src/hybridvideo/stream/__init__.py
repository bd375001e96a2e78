"""Delivery through Cloudflare Stream: its API client, playback tokens and webhooks."""
