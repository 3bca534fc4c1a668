"""Writers: one module per output format, each fed plain `Entry` records (dataset.py)."""
