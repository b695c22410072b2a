"""Insights: online detection of anomalies, level shifts and trends in the minute aggregates, and
their explanation by the dimension value that moved. Pure logic over plain data (no services):
``detect`` (one river model per series), ``explain`` (Adtributor-style root cause), ``engine``
(minute frames in, insights out). The agent (streams/insights.py), the API's on-demand run
(serving/routes/insights.py) and the bench (bench/insights.py) drive the same engine.
"""
