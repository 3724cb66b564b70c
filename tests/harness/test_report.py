"""The campaign report names its error/bound histogram bins so the last one reads as 'past
the bound', not '<= inf'."""
from harness.report import RATIO_EDGES
from harness.report import ratio_bin_labels


def test_ratio_bins_are_upper_bounds_except_the_open_last_one():
    labels = ratio_bin_labels([str(e) for e in RATIO_EDGES])
    assert len(labels) == len(RATIO_EDGES)
    assert labels[0] == "<= 0.0"
    assert labels[-2] == "<= 1.0"
    assert labels[-1] == "> 1.0"
    assert not any("inf" in label for label in labels)
