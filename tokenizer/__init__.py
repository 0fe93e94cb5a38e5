"""OmniTokenizer: the joint image-video tokenizer (VQ and KL heads), its losses and its training."""
from .config import OmniTokenizerConfig
from .model import EncoderOutput, OmniTokenizer

__all__ = ["EncoderOutput", "OmniTokenizer", "OmniTokenizerConfig"]
