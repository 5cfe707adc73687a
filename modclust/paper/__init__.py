"""The paper's side: its numbers and data-dependent sentences as LaTeX, and its figures."""
