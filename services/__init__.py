"""fogmap: visualization-guided active learning on images."""
