"""Human review: choose rows for review, write them for a labelling tool, read decisions back."""
