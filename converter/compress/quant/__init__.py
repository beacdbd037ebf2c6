"""TF-MOT quantization: quantizers, then configs, then the registry (each imports only the ones before it)."""
