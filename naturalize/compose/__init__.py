"""Composition: realistic synthetic PBC images from a sprite bank (`naturalize compose`)."""
