"""crystalloop.control."""
