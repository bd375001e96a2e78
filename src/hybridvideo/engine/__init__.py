"""hybridvideo's own Stream-compatible engine: API, encoding, delivery, webhooks."""
