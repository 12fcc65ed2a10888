"""finmlops.report: the self-contained HTML page of every result in a workspace (``page``)."""
