"""The networks and their checkpoint files: the HyDRA DiT (`dit`, its hybrid memory `memory`), the Wan2.1 VAE
(`vae`), the umT5 text encoder (`text_encoder`), the Flatland pixel codec (`codecs`), and their loaders.

Modules are imported where they are used (`hydra_wm.models.dit`, ...); this package imports nothing itself, so
that `import hydra_wm.models.vae` does not pull in the DiT or transformers."""
