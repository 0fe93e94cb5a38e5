"""Autoregressive generation over OmniTokenizer-VQVAE codes: extraction, a Llama LM, sampling, training."""
