"""crystalloop.vision."""
