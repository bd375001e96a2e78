"""Sending catalog videos to the Stream service and bringing the outcome back."""
