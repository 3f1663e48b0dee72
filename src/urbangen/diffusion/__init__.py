"""Generator adaptation: two-stage diffusion fine-tuning (appearance, then semantic control) and sampling.

Entry points: :func:`urbangen.diffusion.adapt.adapt` (training) and
:class:`urbangen.diffusion.sampler.Generator` (sampling). Modules import torch and diffusers, so import
them where they are used.
"""
