"""safeguard-batch: label Parquet content with policy-reasoning safety models, auditably."""

__version__ = "0.1.0"
