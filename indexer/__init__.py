"""pixscape indexer: turns a folder of images into a published snapshot."""
