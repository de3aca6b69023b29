"""crystalloop.digital_twin."""
