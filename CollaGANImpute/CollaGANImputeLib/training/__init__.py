"""Training CollaGAN: the configuration, the losses of METHOD.md, the step loop with exact resume, and data-parallel helpers."""
