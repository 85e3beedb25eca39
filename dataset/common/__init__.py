"""Helpers shared by the image datasets, one job per module.

options        reading a dataset's YAML block (ConfigError naming the key)
files          image files -> checked float32 channel-first arrays (DataError naming the file)
normalization  per-image intensity normalisation and its inverse
geometry       resize or shared crop to patch_size
augmentation   one random flip/rot90/affine applied alike to every image of an item
splits         train/val split by group, written to and reread from the run folder
cache          the first cache_rate of the items, decoded before DataLoader workers start
image_items    ImageItemsDataset: the pipeline the TIF, image-folder and manifest datasets share
"""
