"""The output folder: its schema, its layout, atomic writes, the label store and label reading."""
