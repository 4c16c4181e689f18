"""`naturalize demo`: draw (or subset) -> prepare -> segment -> compose -> build -> train -> evaluate -> report.html.

pipeline.run_demo runs it; report renders the HTML page; sheets makes the contact sheets.
"""
