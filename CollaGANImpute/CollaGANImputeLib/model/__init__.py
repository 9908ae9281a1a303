"""The networks and their weights on disk: CollaGAN's generator and discriminator, the model card, safetensors weights and whole training checkpoints."""
