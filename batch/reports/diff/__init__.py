"""What changed between two label sets: flip matrices, rates, examples, Markdown."""
