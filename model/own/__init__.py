"""The project's own transformer ("Attention Is All You Need": encoder-decoder or decoder-only): its config, modules,
tokenizer, checkpoints, and the pipeline that runs it in the traced call."""
