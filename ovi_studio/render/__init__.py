"""`ovi-studio render`: run the planned shots through an engine, keep lossless artifacts per
take, and assemble the final cut. See docs/render.md for the output folder layout."""
