"""Phase 1: copy the archive's masters into Stream, as a batch an operator can trust."""
