"""Plain forms of what the package does the fast way, for tests to compare against."""

from lstmtext import corpus


def split_heldout(text: str, fraction: float = 0.1) -> tuple[str, str]:
    """Split off the last `fraction` of `text` as validation text: `(train, valid)`, in order: the
    cut lstmtext makes while streaming a corpus (corpus.Listing.heldout_end), written on a string.

    The cut moves forward to the next line start so no line is split; with no line start after
    the cut point (one long last line), the cut falls inside that line.
    """
    corpus._check_fraction(fraction)
    cut = int(len(text) * (1.0 - fraction))
    if cut > 0 and text[cut - 1] != "\n":
        newline = text.find("\n", cut)
        # A "\n" that ends the text starts no line; then cut at the character instead.
        if newline != -1 and newline + 1 < len(text):
            cut = newline + 1
    train, valid = text[:cut], text[cut:]
    if not train or not valid:
        raise corpus._too_small("the corpus", len(text), fraction)
    return train, valid
