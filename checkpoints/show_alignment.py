"""Print, for each generated token, the source token (and its position) its cross-attention looks at most.

    .venv/bin/python checkpoints/show_alignment.py checkpoints/dates "Saturday, November 21, 2026"

For each decoder layer: heads averaged, and each head on its own (argmax source token per output token).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for `model`

from model import load  # noqa: E402


def alignment(pipe, text: str) -> None:
    result = pipe.run(text)
    src = result.source.tokens
    outs = result.output_tokens  # what each decoder position predicts
    print(f"\n{text!r} -> {result.output_text!r}   source: " + " ".join(f"{t}@{j}" for j, t in enumerate(src)))
    for name in sorted(n for n in result.trace if n.endswith("cross_attn")):
        weights = result.trace[name].weights[0].float().cpu()  # (H, T, S)
        mean = weights.mean(0)
        cells = [f"{o}<-{src[int(mean[i].argmax())]}@{int(mean[i].argmax())}({float(mean[i].max()):.2f})"
                 for i, o in enumerate(outs)]
        print(f"  {name} mean of heads: " + "  ".join(cells))
        for h in range(weights.shape[0]):
            cells = [f"{o}<-{src[int(weights[h, i].argmax())]}" for i, o in enumerate(outs)]
            print(f"    head {h}: " + " ".join(cells))


if __name__ == "__main__":
    pipe = load(sys.argv[1], device="cpu")
    for text in sys.argv[2:]:
        alignment(pipe, text)
