"""crystalloop.hardware.sim."""
