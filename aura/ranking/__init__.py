"""The hybrid ranking both the API (serving/) and the worker's pool refresher (streams/usercands.py) run:
the dict ranking and its weights (blend.py), its numpy twin (vector.py), the Lua scripts (scripts.py), the
ranking over Redis in stages (ranker.py) and the API's reads of it (reader.py)."""
