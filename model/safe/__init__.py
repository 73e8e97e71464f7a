"""Reading what a user hands us, which may be hostile: the checkpoint error, capped file reads, the path policy, the
model memory limit, tokenizer files and the regexes inside them."""
