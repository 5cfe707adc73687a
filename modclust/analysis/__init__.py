"""Measurements of a trained model: cluster ablations, label semanticity, selectivity, the spectral
baseline, circuit objectives, greedy and learned-mask circuits. Built on :mod:`modclust.core`."""
