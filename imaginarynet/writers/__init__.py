"""Writers: one module per output format, each fed the same image records (dataset.Entry), the ones assembly
writes and reader.read_dataset reads back; exports.FORMATS is their table."""
