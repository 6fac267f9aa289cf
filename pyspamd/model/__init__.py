"""The shipped content model: features, the stored linear model, and its training."""
