"""The seed notebook replayed as written, and its table over seeds."""
