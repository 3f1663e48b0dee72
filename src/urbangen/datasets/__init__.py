"""Dataset readers (one module per on-disk format) and the generated-dataset writer."""
