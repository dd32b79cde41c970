"""Names of the folders ranklab writes, shared by training and inspection (kept here so that
reading a saved adapter imports nothing of training)."""

ADAPTER_DIR = "adapter"  # a run folder's saved adapter (ranklab.save_adapters format)
