"""Model building: the layer-name API, stock-layer BERT, the checkpoint weight map, custom layers."""
