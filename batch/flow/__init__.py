"""The labelling flow, one module per stage: read → plan → render → generate → parse → write.

``labeller.Labeller`` sequences the stages for a group of chunks; ``batch.runners`` feed it.
"""
