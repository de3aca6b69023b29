"""crystalloop.vision.learn."""
