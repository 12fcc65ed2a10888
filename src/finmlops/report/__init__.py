"""finmlops.report: the self-contained HTML page of every result in a workspace.

``page`` assembles it (``write_report``, ``build_report``), ``sections`` holds one module per section, ``charts`` the
SVG charts and ``base`` what sections share (``Section``, ``ReportError``, typed reading of result files).
"""
