"""Code shared by the tokenizer, the generators and the evaluation: data, checkpoints, runtime helpers."""
