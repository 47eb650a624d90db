"""The charts drawn off-screen: the counts and lines they show."""

from matplotlib.figure import Figure

from modelforge import plots


def test_the_token_histogram_counts_every_row_and_marks_max_length():
    lengths = [10, 20, 30, 40]
    figure = plots.token_histogram(lengths, max_length=25)
    assert isinstance(figure, Figure)
    (axes,) = figure.axes
    assert sum(patch.get_height() for patch in axes.patches) == 4  # every row counted once
    assert axes.get_lines()[0].get_xdata()[0] == 25  # the max_length line
