import numpy as np
import pytest

from lstmtext import batching
from lstmtext.errors import CorpusError


def test_stream_layout_matches_hand_worked_example():
    ids = np.arange(11)
    s = batching.make_streams(ids, 2)
    # Two contiguous streams side by side; token 10 is the documented tail (11 % 2 = 1 token).
    assert s.tolist() == [[0, 5], [1, 6], [2, 7], [3, 8], [4, 9]]
    w = list(batching.windows(s, 3))
    assert [x.tolist() for x, _ in w] == [[[0, 5], [1, 6], [2, 7]], [[3, 8]]]
    assert [y.tolist() for _, y in w] == [[[1, 6], [2, 7], [3, 8]], [[4, 9]]]


@pytest.mark.parametrize("N,B,T", [(100, 3, 7), (97, 5, 4), (50, 1, 49), (64, 4, 15)])
def test_windows_cover_each_stream_once(N, B, T):
    ids = np.arange(N)
    s = batching.make_streams(ids, B)
    xs = np.concatenate([x for x, _ in batching.windows(s, T)])  # (n-1, B)
    ys = np.concatenate([y for _, y in batching.windows(s, T)])
    n = N // B
    assert xs.shape == (n - 1, B)
    # Inputs are every token but the last of each stream, targets every token but the first:
    # nothing dropped or repeated except the tail of N % B tokens.
    assert sorted(xs.ravel().tolist() + s[-1].tolist()) == list(range(n * B))
    assert (ys == xs + 1).all()
    assert batching.num_windows(n, T) == len(list(batching.windows(s, T)))


def test_resume_from_window():
    s = batching.make_streams(np.arange(40), 2)
    all_w = list(batching.windows(s, 3))
    assert [x.tolist() for x, _ in batching.windows(s, 3, start=2)] == [x.tolist() for x, _ in all_w[2:]]


def test_too_short_says_how_many_tokens_are_needed():
    with pytest.raises(CorpusError, match=r"needs at least 84.*--batch-size"):
        batching.check_enough(50, 4, 20, "the training text")
    batching.check_enough(84, 4, 20, "the training text")


def test_padded_streams_count_every_token_once():
    ids = np.arange(23)
    x, y, m = batching.padded_streams(ids, 4)
    assert x.shape == (6, 4)
    kept_x = sorted(x.T.ravel()[m.T.ravel() == 1].tolist())
    kept_y = sorted(y.T.ravel()[m.T.ravel() == 1].tolist())
    assert kept_x == list(range(22)) and kept_y == list(range(1, 23))
