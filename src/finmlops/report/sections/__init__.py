"""One module per report section, each with ``build(settings) -> Section`` and a ``render`` of its typed input."""
