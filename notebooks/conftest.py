"""nbval settings for the notebooks: compare printed text only.

Progress bars and warnings (stderr), rich HTML and figures are not compared; the cells that
print rounded metric tables are compared strictly.
"""


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr", "text/html", "image/png", "application/javascript")
