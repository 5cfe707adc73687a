"""The ground floor: the model, its partitions and clusterability, data, training, the optimizer,
checkpoints, statistics, argument checks and file writing. Imports nothing above it."""
