"""Models the project trains itself (so that everything runs offline), with their data,
checkpoints and training configs: one subpackage per zoo, and the training module they share."""
