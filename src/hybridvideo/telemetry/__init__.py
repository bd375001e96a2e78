"""Player telemetry: QoE beacons from the reference player (validated, stored raw)."""
