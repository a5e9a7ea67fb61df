"""The verifier's training step in PyTorch, beside the project's (candle) on the same work.

Reads the JSON that `bench-verifier --steps-file FILE` wrote: the shipped verifier's folder, the
token ids of every step's (correct, wrong) solution pairs, the optimiser's settings and the
project's losses. Builds the same model (transformers' LlamaModel from the verifier's
config.json and weights, plus its `score` head with bias, the score read at each sequence's last
token), runs the same steps (Bradley-Terry loss + lambda * mean(V^2), AdamW with the same
settings, sequences right-padded, no attention mask: causal attention never looks at the padding
after a sequence) and prints solutions/s and the largest difference from the project's losses.

    python verifier_step_torch.py FILE [--threads N]
"""

import argparse
import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaModel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("steps_file")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    record = json.loads(Path(args.steps_file).read_text())
    model_dir = Path(record["model"])

    config = LlamaConfig.from_pretrained(model_dir)
    config._attn_implementation = "eager"
    body = LlamaModel(config)
    weights = load_file(model_dir / "model.safetensors")
    body_weights = {k[len("model."):]: v for k, v in weights.items() if k.startswith("model.")}
    body.load_state_dict(body_weights, strict=True)
    head = torch.nn.Linear(config.hidden_size, 1, bias=True)
    with torch.no_grad():
        head.weight.copy_(weights["score.weight"])
        head.bias.copy_(weights["score.bias"])
    body.train()
    parameters = list(body.parameters()) + list(head.parameters())
    optimiser = torch.optim.AdamW(
        parameters,
        lr=record["learning_rate"],
        weight_decay=record["weight_decay"],
        betas=(0.9, 0.999),
        eps=1e-8,
    )
    lam = record["lambda"]

    def step(correct, incorrect):
        sequences = correct + incorrect
        longest = max(len(s) for s in sequences)
        ids = torch.tensor([s + [0] * (longest - len(s)) for s in sequences])
        last = torch.tensor([len(s) - 1 for s in sequences])
        hidden = body(input_ids=ids).last_hidden_state
        scores = head(hidden[torch.arange(len(sequences)), last]).squeeze(1)
        n = len(correct)
        comparison = torch.nn.functional.softplus(scores[n:] - scores[:n]).mean()
        loss = comparison + lam * (scores**2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return loss.item()

    losses = []
    started = time.perf_counter()
    for s in record["steps"]:
        losses.append(step(s["correct"], s["incorrect"]))
    seconds = time.perf_counter() - started
    solutions = record["solutions"]
    diff = max(abs(a - b) for a, b in zip(losses, record["losses"]))
    first = abs(losses[0] - record["losses"][0])
    print(
        f"pytorch {torch.__version__}: {len(losses)} steps ({solutions} solutions) in "
        f"{seconds:.2f}s = {solutions / seconds:.1f} solutions/s, {args.threads} threads"
    )
    print(
        f"candle's speed / pytorch's: {seconds / record['seconds']:.2f}x; "
        f"loss difference: first step {first:.2e}, largest over all steps {diff:.2e}"
    )


if __name__ == "__main__":
    main()
