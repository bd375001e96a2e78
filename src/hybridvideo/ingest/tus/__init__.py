"""The tus 1.0.0 resumable upload protocol, split into a pure core and its adapters."""
