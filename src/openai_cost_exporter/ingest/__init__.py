"""Bringing data into the store: cost pages (`costs`), usage (`usage_stage`), listings (`directory`)."""
