"""Diffusion generators over OmniTokenizer-VAE latents: DiT (images) and Latte (videos).

- config.py           per-scale YAML (configs/{tiny,small,paper}.yaml, sections `dit` and `latte`) -> dataclasses
- dit.py / latte.py   the models (diffusers ModelMixin + ConfigMixin); models.py the registry
- diffusion.py        the training loss (MSE + variational bound) and sampling through diffusers schedulers
- extract_latents.py  encode a dataset once (posterior mean + log-variance, original + flip), measure the scale
- latents.py          the latents on disk as a training set (a fresh posterior sample per item per step)
- train.py            the trainer; sample.py sample folders, grids and videos (written through shared/media.py);
                      pipeline.py the one-call object
"""
