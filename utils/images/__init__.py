"""Images as arrays: grids and PNGs, patches of large images, labelled comparison grids."""
