import torch

from stages.train import ctc_targets


def test_ctc_targets_keep_only_spoken_tokens():
    eot = 50  # first special id: <|endoftext|>; prefix tokens and timestamps are above it
    labels = torch.tensor(
        [
            [51, 52, 53, 10, 11, 12, eot],
            [51, 52, 53, 7, eot, -100, -100],
        ]
    )
    targets, lengths = ctc_targets(labels, eot)
    assert targets.tolist() == [10, 11, 12, 7]
    assert lengths.tolist() == [3, 1]
